//! `POST /incidents` end to end: SDM in → journal → NMPP → Athena, with idempotency, retries,
//! parking and replay (from the operations API and from the CLI against the real binary).

use fixtures::athena::{AthenaSim, AthenaSimOptions, Person};
use nmpp_tests::{ProcessGateway, TestGateway, header, sdm, secs};
use serde_json::Value;
use std::time::Duration;

fn person<'a>(people: &'a [Person], surname: &str) -> &'a Person {
    people
        .iter()
        .find(|p| p.surname.as_deref() == Some(surname))
        .unwrap_or_else(|| panic!("no person {surname} in {people:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_crime_report_arrives_at_athena_with_its_people_and_roles() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);

    let accepted = api.submit_ok(&doc).await;
    let receipt: Value = serde_json::from_str(&accepted.body).unwrap();
    assert_eq!(receipt["data"]["type"], "receipt");
    assert_eq!(receipt["data"]["attributes"]["submissionId"], sid);
    assert_eq!(receipt["data"]["attributes"]["status"], "accepted");
    assert!(!accepted.replayed);

    let ex = api
        .wait_for_status(&accepted.exchange_id, "delivered", secs(15))
        .await;
    assert_eq!(ex["submissionId"], sid);
    assert_eq!(ex["attemptCount"], 1);

    let rec = gw
        .sim
        .record_by_key(&sid)
        .expect("Athena holds a record created with the submission id as idempotency key");
    assert_eq!(ex["targetRef"], rec.crime_reference.as_str());
    assert_eq!(rec.header.force_code, "42");
    assert_eq!(rec.header.submission_id, sid);
    assert_eq!(
        rec.header.source_reference.as_deref(),
        Some("TYA-1-22-0100-001")
    );
    assert_eq!(
        rec.narrative.as_deref(),
        Some("test form, no crime to action")
    );
    assert_eq!(rec.people.len(), 2, "{:#?}", rec.people);

    let mick = person(&rec.people, "Crockett");
    assert_eq!(mick.roles, ["RPT"], "Mick Crockett is the person reporting");
    assert_eq!(mick.forenames.as_deref(), Some("Mick"));
    assert_eq!(mick.gender.as_deref(), Some("M"));
    assert_eq!(mick.date_of_birth.as_deref(), Some("2000-01-01"));
    assert_eq!(mick.phone.as_deref(), Some("07700900123"));
    assert_eq!(mick.email.as_deref(), Some("mick.crockett@example.org"));
    let address = mick.address.as_ref().expect("Mick's current address");
    assert_eq!(address.postcode.as_deref(), Some("LU1 2AB"));

    let dave = person(&rec.people, "jones");
    assert_eq!(dave.roles, ["WIT"], "dave jones is a witness");
    assert_eq!(dave.forenames.as_deref(), Some("dave"));
    assert_eq!(dave.date_of_birth, None);

    let location = rec.location.as_ref().expect("the incident location");
    assert_eq!(location.town.as_deref(), Some("Bedford"));
    assert_eq!(gw.sim.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skeleton_arrives_at_athena_as_a_record_without_people() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = sdm::skeleton();
    let sid = sdm::submission_id(&doc);

    let accepted = api.submit_ok(&doc).await;
    let ex = api
        .wait_for_status(&accepted.exchange_id, "delivered", secs(15))
        .await;

    let rec = gw.sim.record_by_key(&sid).expect("the record at Athena");
    assert_eq!(ex["targetRef"], rec.crime_reference.as_str());
    assert_eq!(rec.header.submission_id, sid);
    assert!(rec.people.is_empty(), "{:#?}", rec.people);
    let class = rec.classification.as_ref().expect("classification");
    assert_eq!(class.category.as_deref(), Some("OCR"));
    assert_eq!(class.sub_category.as_deref(), Some("TV1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_submission_twice_is_one_exchange_and_one_athena_record() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);

    let first = api.submit_ok(&doc).await;
    let second = api.submit_ok(&doc).await;
    assert!(!first.replayed);
    assert!(second.replayed, "the repeat says Idempotent-Replayed: true");
    assert_eq!(second.body, first.body, "the repeat gets the same answer");
    assert_eq!(second.exchange_id, first.exchange_id);

    api.wait_for_status(&first.exchange_id, "delivered", secs(15))
        .await;
    // A repeat after delivery is still the same answer.
    let third = api.submit_ok(&doc).await;
    assert!(third.replayed);
    assert_eq!(third.body, first.body);

    let all = api.exchanges("limit=1000").await;
    assert_eq!(all.len(), 1, "one exchange: {all:#?}");
    assert_eq!(all[0]["id"], first.exchange_id.as_str());
    assert_eq!(all[0]["submissionId"], sid);
    assert_eq!(gw.sim.records().len(), 1);
    assert_eq!(gw.sim.stats().created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_submission_create_one_exchange() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = sdm::skeleton();

    let answers = futures::future::join_all((0..8).map(|_| api.submit_ok(&doc))).await;
    let created: Vec<_> = answers.iter().filter(|a| !a.replayed).collect();
    assert_eq!(created.len(), 1, "exactly one answer is not a replay");
    for a in &answers {
        assert_eq!(a.body, answers[0].body, "every answer is the same");
    }
    api.wait_for_status(&answers[0].exchange_id, "delivered", secs(15))
        .await;
    assert_eq!(api.exchanges("limit=1000").await.len(), 1);
    assert_eq!(gw.sim.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_failing_five_times_is_delivered_on_the_sixth_attempt() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    gw.sim.fail_next(5, 503);
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);

    let accepted = api.submit_ok(&doc).await;
    let ex = api
        .wait_for_status(&accepted.exchange_id, "delivered", secs(20))
        .await;

    let attempts = ex["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 6, "{attempts:#?}");
    assert_eq!(ex["attemptCount"], 6);
    for (i, a) in attempts[..5].iter().enumerate() {
        assert_eq!(a["number"], i + 1, "{a}");
        assert_eq!(a["outcome"], "retry", "{a}");
        assert_eq!(a["errorClass"], "upstream_5xx", "{a}");
        assert_eq!(a["httpStatus"], 503, "{a}");
    }
    assert_eq!(attempts[5]["outcome"], "delivered");
    assert_eq!(attempts[5]["errorClass"], Value::Null);
    assert_eq!(attempts[5]["httpStatus"], 201);

    assert_eq!(gw.sim.stats().faults_served, 5);
    assert_eq!(gw.sim.stats().created, 1);
    let rec = gw.sim.record_by_key(&sid).expect("delivered in the end");
    assert_eq!(ex["targetRef"], rec.crime_reference.as_str());
}

/// Waits a few poll intervals and checks the exchange is still parked with `attempts` attempts:
/// parking is final until an operator acts.
async fn stays_parked(api: &nmpp_tests::Api, id: &str, attempts: u64) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ex = api.exchange(id).await;
    assert_eq!(ex["status"], "parked", "{ex:#}");
    assert_eq!(ex["attemptCount"], attempts, "{ex:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_parks_at_once_and_a_replay_delivers_a_linked_child() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    gw.sim.reject_next(1, 422);
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);

    let parent_id = api.submit_ok(&doc).await.exchange_id;
    let parent = api.wait_for_status(&parent_id, "parked", secs(15)).await;
    let attempts = parent["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "parked after one attempt: {attempts:#?}");
    assert_eq!(attempts[0]["outcome"], "parked");
    assert_eq!(attempts[0]["errorClass"], "rejected");
    assert_eq!(attempts[0]["httpStatus"], 422);
    assert_eq!(parent["lastErrorClass"], "rejected");
    stays_parked(&api, &parent_id, 1).await;
    assert!(gw.sim.records().is_empty());

    // The fault is gone (reject_next(1) is used up); replay.
    assert_eq!(gw.sim.faults().reject_next, 0);
    let child_id = api.replay(&parent_id).await;
    assert_ne!(child_id, parent_id);
    let child = api.wait_for_status(&child_id, "delivered", secs(15)).await;
    assert_eq!(child["parentId"], parent_id.as_str());
    assert_eq!(child["submissionId"], sid);
    assert_eq!(child["idempotencyKey"], sid, "a replay keeps the key");

    let parent = api.exchange(&parent_id).await;
    assert_eq!(parent["status"], "parked", "history is not overwritten");
    assert_eq!(parent["attemptCount"], 1);
    assert_eq!(parent["children"], serde_json::json!([child_id]));
    assert_eq!(parent["parentId"], Value::Null);

    let rec = gw.sim.record_by_key(&sid).expect("delivered by the replay");
    assert_eq!(child["targetRef"], rec.crime_reference.as_str());
    assert_eq!(gw.sim.records().len(), 1);

    // Both are visible in the list.
    let ids: Vec<String> = api
        .exchanges("limit=1000")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&parent_id) && ids.contains(&child_id),
        "{ids:?}"
    );

    // A delivered exchange is not replayed.
    let res = api
        .post(&format!("/v1/exchanges/{child_id}/replay"))
        .send()
        .await
        .unwrap();
    nmpp_tests::error_document(res, 409).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_exchange_does_not_hold_up_the_next_one() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    gw.sim.reject_next(1, 400);
    let first = api.submit_ok(&sdm::online_crime_report()).await;
    api.wait_for_status(&first.exchange_id, "parked", secs(15))
        .await;
    let second_doc = sdm::online_crime_report();
    let second = api.submit_ok(&second_doc).await;
    api.wait_for_status(&second.exchange_id, "delivered", secs(15))
        .await;
    assert!(
        gw.sim
            .record_by_key(&sdm::submission_id(&second_doc))
            .is_some()
    );
    stays_parked(&api, &first.exchange_id, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_cli_is_delivered_by_the_running_server() {
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::new(&sim.base_url());
    gw.start().await;
    let api = gw.api();
    sim.reject_next(1, 422);
    let doc = sdm::online_crime_report();
    let sid = sdm::submission_id(&doc);

    let parent_id = api.submit_ok(&doc).await.exchange_id;
    let parent = api.wait_for_status(&parent_id, "parked", secs(15)).await;
    assert_eq!(parent["attemptCount"], 1);
    assert!(sim.records().is_empty());

    let out = gw.cli(&["replay", &parent_id]).await;
    assert!(out.status.success(), "replay failed: {out:?}");
    let child_id = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "as")
        .nth(1)
        .unwrap_or_else(|| panic!("no child id in {:?}", out.stdout))
        .to_owned();
    assert!(uuid::Uuid::parse_str(&child_id).is_ok(), "{}", out.stdout);

    // The server polls the journal and picks the child up by itself.
    let child = api.wait_for_status(&child_id, "delivered", secs(15)).await;
    assert_eq!(child["parentId"], parent_id.as_str());
    let parent = api.exchange(&parent_id).await;
    assert_eq!(parent["status"], "parked");
    assert_eq!(parent["children"], serde_json::json!([child_id]));
    assert!(sim.record_by_key(&sid).is_some());
    assert_eq!(sim.records().len(), 1);

    // The CLI sees both, linked.
    let shown = gw
        .cli(&["exchanges", "show", &child_id, "--json"])
        .await
        .json();
    assert_eq!(shown["parentId"], parent_id.as_str());
    assert_eq!(shown["status"], "delivered");
    gw.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_header_and_receipt_link_name_the_exchange() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let res = api.submit(&sdm::skeleton()).await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(header(&res, "content-type").starts_with(nmpp_tests::JSONAPI));
    let location = header(&res, "location");
    let body: Value = res.json().await.unwrap();
    let id = body["data"]["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/exchanges/{id}"));
    assert_eq!(body["data"]["links"]["self"], location.as_str());
    assert_eq!(body["data"]["attributes"]["exchangeId"], id);
    // The Location resolves.
    let ex = api.get_json(&location).await;
    assert_eq!(ex["data"]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_answers_503_with_retry_after_and_never_a_201() {
    // A journal capped at 256 KiB fills up after a few dozen large submissions.
    let gw = TestGateway::start_with(|c| c.journal.max_size_bytes = Some(256 * 1024)).await;
    let api = gw.api();
    let mut acked = Vec::new();
    let mut refusal = None;
    for _ in 0..200 {
        let mut doc = sdm::online_crime_report();
        // Unknown attributes are kept, so this is stored with the payload.
        doc["data"]["attributes"]["padding"] = Value::String("x".repeat(16 * 1024));
        let res = api.submit(&doc).await.unwrap();
        match res.status().as_u16() {
            201 => acked.push(sdm::submission_id(&doc)),
            503 => {
                refusal = Some(res);
                break;
            }
            other => panic!("got {other}: {}", res.text().await.unwrap()),
        }
    }
    let res = refusal.expect("the journal never filled up");
    assert!(!acked.is_empty());
    let retry_after = header(&res, "retry-after");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After {retry_after:?}"
    );
    nmpp_tests::error_document(res, 503).await;

    // The server is still up, and everything acknowledged is in the journal file.
    let live = api.http.get(api.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let db = rusqlite::Connection::open(gw.journal_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT count(*) FROM exchanges WHERE idempotency_key = ?1")
        .unwrap();
    for sid in &acked {
        let n: i64 = stmt.query_row([sid], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "acknowledged submission {sid} is not in the journal");
    }
    let total: i64 = db
        .query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        total as usize,
        acked.len(),
        "a refused submission was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_payload_with_a_known_submission_id_gets_the_first_answer() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = sdm::online_crime_report();
    let first = api.submit_ok(&doc).await;
    let mut changed = doc.clone();
    changed["data"]["attributes"]["incidentDescription"] = "changed on the way".into();
    let second = api.submit_ok(&changed).await;
    assert!(second.replayed);
    assert_eq!(second.body, first.body);
    api.wait_for_status(&first.exchange_id, "delivered", secs(15))
        .await;
    let rec = gw.sim.record_by_key(&sdm::submission_id(&doc)).unwrap();
    assert_eq!(
        rec.narrative.as_deref(),
        Some("test form, no crime to action"),
        "the first payload stands"
    );
    assert_eq!(gw.sim.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_parked_exchange_can_be_replayed_and_only_once() {
    let gw = TestGateway::start().await;
    let api = gw.api();

    // Pending (Athena refuses connections, so it keeps retrying): not replayable.
    gw.sim.refuse().await;
    let pending = api.submit_ok(&sdm::skeleton()).await.exchange_id;
    nmpp_tests::eventually("a failed attempt", secs(10), || async {
        let ex = api.exchange(&pending).await;
        if ex["attemptCount"].as_u64() >= Some(1) && ex["status"] == "pending" {
            Ok(())
        } else {
            Err(ex.to_string())
        }
    })
    .await;
    let res = api
        .post(&format!("/v1/exchanges/{pending}/replay"))
        .send()
        .await
        .unwrap();
    nmpp_tests::error_document(res, 409).await;
    gw.sim.accept().await.unwrap();
    api.wait_for_status(&pending, "delivered", secs(15)).await;

    // Parked: replayable once.
    gw.sim.reject_next(1, 422);
    let parked = api.submit_ok(&sdm::skeleton()).await.exchange_id;
    api.wait_for_status(&parked, "parked", secs(15)).await;
    let child = api.replay(&parked).await;
    let res = api
        .post(&format!("/v1/exchanges/{parked}/replay"))
        .send()
        .await
        .unwrap();
    nmpp_tests::error_document(res, 409).await;
    api.wait_for_status(&child, "delivered", secs(15)).await;
    assert_eq!(
        api.exchange(&parked).await["children"],
        serde_json::json!([child])
    );

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    let res = api
        .post(&format!("/v1/exchanges/{unknown}/replay"))
        .send()
        .await
        .unwrap();
    nmpp_tests::error_document(res, 404).await;
    let res = api.post("/v1/exchanges/xyz/replay").send().await.unwrap();
    nmpp_tests::error_document(res, 400).await;
}
