//! Change detection → NMPP events → iHub, black-box: a gateway built from configuration runs
//! against real simulators (Athena, the warehouse on PostgreSQL, STORM) and a real iHub
//! receiver; tests change facts in the simulators and look at what iHub received and what the
//! journal holds.
//!
//! Tests wait for what they expect with deadlines (never asserting on durations). "Nothing
//! more" is shown by ordering, not by waiting: a later change's event arriving proves the
//! detector has already looked at every earlier change of the feed.

use adapters::{
    CommandControl, DeliveryContext,
    command_control::{IncidentMessage, MessageKind},
    storm::{StormClient, StormConfig},
};
use fixtures::{
    athena::{AthenaSim, AthenaSimOptions},
    dataset::{Dataset, Mutation},
    ihub::{IhubSim, IhubSimOptions},
    storm::{StormSim, StormSimOptions},
    warehouse::Warehouse,
};
use nmpp_tests::{
    FORCE, IHUB_FORCE_ID,
    detect::{
        DetectRig, SeenEvent, athena_records, detecting_force, seen, storm, warehouse_records,
    },
    eventually, secs,
};
use serde_json::json;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// (subject, event type) → how many times iHub received it.
fn tally(events: &[SeenEvent]) -> BTreeMap<(String, String), usize> {
    let mut t = BTreeMap::new();
    for e in events {
        *t.entry((e.subject.clone(), e.event_type.clone()))
            .or_insert(0) += 1;
    }
    t
}

fn assert_no_duplicates(events: &[SeenEvent], ihub: &IhubSim) {
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "an event id arrived twice: {events:#?}"
    );
    assert_eq!(ihub.duplicates(), 0, "iHub saw a repeated event id");
}

async fn wait_for(ihub: &IhubSim, what: &str, n: usize, f: impl Fn(&SeenEvent) -> bool) {
    eventually(what, secs(30), || {
        let got = seen(ihub).iter().filter(|e| f(e)).count();
        async move {
            if got >= n {
                Ok(())
            } else {
                Err(format!("{got} of {n}"))
            }
        }
    })
    .await;
}

fn has(subject: &str, ty: &str) -> impl Fn(&SeenEvent) -> bool {
    let (s, t) = (subject.to_owned(), ty.to_owned());
    move |e| e.subject == s && e.event_type == t
}

const R1: &str = "42/00101/26";
const R2: &str = "42/00102/26";
const R3: &str = "42/00103/26";
const R4: &str = "42/00104/26";
const R5: &str = "42/00105/26";
const R6: &str = "42/00106/26";

fn status(r: &str, s: &str, at: &str) -> Mutation {
    Mutation::SetStatus {
        crime_reference: r.into(),
        status: s.into(),
        at: at.into(),
    }
}
fn officer(r: &str, o: &str, at: &str) -> Mutation {
    Mutation::AssignOfficer {
        crime_reference: r.into(),
        officer: o.into(),
        supervisor: None,
        at: at.into(),
    }
}
fn outcome(r: &str, code: &str, at: &str) -> Mutation {
    Mutation::AssignOutcome {
        crime_reference: r.into(),
        code: code.into(),
        at: at.into(),
    }
}
fn update(r: &str, at: &str) -> Mutation {
    Mutation::AddUpdate {
        crime_reference: r.into(),
        text: "We have reviewed the CCTV".into(),
        at: at.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_changes_produce_each_event_exactly_once_and_no_ops_nothing() {
    let rig = DetectRig::start(|_, _, _| {}).await;
    let dataset = Dataset::builtin();
    rig.athena.load_dataset(&dataset);
    wait_for(&rig.ihub, "every case recorded", 6, |e| {
        e.event_type == "CASE_RECORDED"
    })
    .await;

    for m in [
        officer(R3, "OFF-1003", "2026-03-01T09:00:00Z"), // first officer: allocated
        officer(R2, "OFF-1004", "2026-03-01T09:00:01Z"), // another officer: oicChanged
        status(R3, "CSTS_0002", "2026-03-01T09:00:02Z"),
        outcome(R2, "21", "2026-03-01T09:00:03Z"),
        // No-ops: a note for the victim, a status set to what it was, the same outcome code.
        update(R1, "2026-03-01T09:00:04Z"),
        status(R4, "CSTS_0004", "2026-03-01T09:00:05Z"),
        outcome(R1, "14", "2026-03-01T09:00:06Z"),
        // The sentinel: once its event is in, every change before it has been looked at.
        status(R6, "CSTS_0004", "2026-03-01T09:00:07Z"),
    ] {
        rig.athena.apply(&m).expect("mutation applies");
    }
    wait_for(
        &rig.ihub,
        "the sentinel status change",
        1,
        has(R6, "CASE_STATUS_CHANGED"),
    )
    .await;
    let events = seen(&rig.ihub);
    let mut expected: BTreeMap<(String, String), usize> = dataset
        .crimes
        .iter()
        .map(|c| ((c.crime_reference.clone(), "CASE_RECORDED".into()), 1))
        .collect();
    for (r, t) in [
        (R3, "CASE_ALLOCATED"),
        (R2, "CASE_OIC_CHANGED"),
        (R3, "CASE_STATUS_CHANGED"),
        (R2, "CASE_OUTCOME_ASSIGNED"),
        (R6, "CASE_STATUS_CHANGED"),
    ] {
        expected.insert((r.into(), t.into()), 1);
    }
    // Wait for the rest of the expected events to be delivered (they were journalled before the
    // sentinel's, but deliveries run concurrently).
    eventually("every expected event delivered", secs(30), || {
        let got = tally(&seen(&rig.ihub));
        let expected = expected.clone();
        async move {
            if expected.iter().all(|(k, n)| got.get(k) >= Some(n)) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    let events = if events.len() < expected.values().sum() {
        seen(&rig.ihub)
    } else {
        events
    };
    assert_eq!(tally(&events), expected, "events: {events:#?}");
    assert_no_duplicates(&events, &rig.ihub);

    // What the events say.
    let by = |s: &str, t: &str| {
        events
            .iter()
            .find(|e| e.subject == s && e.event_type == t)
            .map(|e| e.payload.clone())
            .unwrap_or_default()
    };
    assert_eq!(by(R3, "CASE_STATUS_CHANGED")["status"], "CSTS_0002");
    assert_eq!(by(R3, "CASE_STATUS_CHANGED")["previous"], "CSTS_0001");
    assert_eq!(
        by(R3, "CASE_ALLOCATED")["officerInCharge"]["officerId"],
        "OFF-1003"
    );
    assert_eq!(
        by(R2, "CASE_OIC_CHANGED")["previous"]["officerId"],
        "OFF-1002"
    );
    assert_eq!(by(R2, "CASE_OUTCOME_ASSIGNED")["outcome"]["code"], "21");
    assert_eq!(by(R1, "CASE_RECORDED")["caseRecord"]["crimeReference"], R1);
    for e in &events {
        assert_eq!(e.force_identifier, IHUB_FORCE_ID.to_string());
    }

    // Each event is an outbound exchange in the journal, delivered, once.
    let api = rig.api();
    let journalled: Vec<_> = api
        .exchanges(&format!("force={FORCE}&limit=1000"))
        .await
        .into_iter()
        .filter(|x| x["kind"].as_str().is_some_and(|k| k.starts_with("case.")))
        .collect();
    assert_eq!(journalled.len(), events.len(), "{journalled:#?}");
    for x in &journalled {
        assert_eq!(x["targetSystem"], "ihub", "{x}");
    }
    let one = api
        .exchange(journalled[0]["id"].as_str().unwrap_or_default())
        .await;
    assert_eq!(one["direction"], "outbound", "{one}");
    assert_eq!(one["sourceSystem"], "athena", "{one}");
    eventually("every event exchange delivered", secs(30), || {
        let api = api.clone();
        async move {
            let pending = api.exchanges("status=pending&limit=1000").await.len();
            if pending == 0 {
                Ok(())
            } else {
                Err(format!("{pending} pending"))
            }
        }
    })
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_field_group_is_refreshed_on_its_own_schedule_and_reload_changes_it() {
    // Status every poll; officer once an hour.
    let rig = DetectRig::start(|c, _, _| {
        let cd = c
            .forces
            .get_mut(FORCE)
            .and_then(|f| f.change_detection.as_mut());
        if let Some(cd) = cd {
            cd.refresh.officer_ms = 3_600_000;
        }
    })
    .await;
    rig.athena.load_dataset(&Dataset::builtin());
    wait_for(&rig.ihub, "every case recorded", 6, |e| {
        e.event_type == "CASE_RECORDED"
    })
    .await;

    rig.athena
        .apply(&officer(R2, "OFF-1004", "2026-03-01T09:00:00Z"))
        .expect("applies");
    rig.athena
        .apply(&status(R2, "CSTS_0003", "2026-03-01T09:00:01Z"))
        .expect("applies");
    wait_for(
        &rig.ihub,
        "the status change",
        1,
        has(R2, "CASE_STATUS_CHANGED"),
    )
    .await;
    // A later change on another case is looked at after R2's groups were: still no officer event.
    rig.athena
        .apply(&status(R5, "CSTS_0002", "2026-03-01T09:00:02Z"))
        .expect("applies");
    wait_for(
        &rig.ihub,
        "a later status change",
        1,
        has(R5, "CASE_STATUS_CHANGED"),
    )
    .await;
    let t = tally(&seen(&rig.ihub));
    assert_eq!(
        t.get(&(R2.into(), "CASE_OIC_CHANGED".into())),
        None,
        "{t:?}"
    );

    // The operator makes the officer group due at every poll; the waiting change comes out.
    rig.change_config(|c| {
        if let Some(cd) = c
            .forces
            .get_mut(FORCE)
            .and_then(|f| f.change_detection.as_mut())
        {
            cd.refresh.officer_ms = 0;
        }
    });
    let (code, body) = rig.reload().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["detecting"], json!([FORCE]));
    wait_for(
        &rig.ihub,
        "the officer change",
        1,
        has(R2, "CASE_OIC_CHANGED"),
    )
    .await;
    rig.athena
        .apply(&status(R4, "CSTS_0005", "2026-03-01T09:00:03Z"))
        .expect("applies");
    wait_for(&rig.ihub, "the sentinel", 1, has(R4, "CASE_STATUS_CHANGED")).await;
    let events = seen(&rig.ihub);
    let t = tally(&events);
    assert_eq!(t[&(R2.into(), "CASE_OIC_CHANGED".into())], 1);
    assert_eq!(t[&(R2.into(), "CASE_STATUS_CHANGED".into())], 1);
    assert_no_duplicates(&events, &rig.ihub);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_by_name_and_the_running_configuration_stays() {
    let rig = DetectRig::start(|_, _, _| {}).await;
    rig.change_config(|c| {
        if let Some(f) = c.forces.get_mut(FORCE) {
            f.national = None; // change detection without anywhere to send events
            if let Some(cd) = f.change_detection.as_mut() {
                cd.page_size = 0;
            }
        }
    });
    let (code, body) = rig.reload().await;
    assert_eq!(code, 422, "{body}");
    let details: Vec<String> = body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["detail"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        details
            .iter()
            .any(|d| d.contains("forces.testshire.change_detection.page_size")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("requires forces.testshire.national")),
        "{details:?}"
    );
    // The running configuration still detects and delivers.
    rig.athena.load_dataset(&Dataset::builtin());
    wait_for(&rig.ihub, "every case recorded", 6, |e| {
        e.event_type == "CASE_RECORDED"
    })
    .await;

    // Reload needs credentials.
    let stranger = nmpp_tests::Api::new(&rig.base_url, "nobody", "nothing");
    let res = stranger
        .post("/v1/config/reload")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 401);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_configuration_file_says_there_is_nothing_to_reload() {
    let gw = nmpp_tests::TestGateway::start().await;
    let res = gw
        .api()
        .post("/v1/config/reload")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 409);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "config.no_source", "{body}");
    gw.stop().await;
}

async fn create_incident(storm: &StormClient, id: &str, grade: &str) -> String {
    let message = IncidentMessage {
        kind: MessageKind::Create,
        message_id: id.into(),
        sent: "2026-01-05T09:14:00Z".into(),
        incident: json!({
            "modelVersion": "1.0.0", "incidentNumber": "SFK-000042", "forceIdentifier": 42,
            "type": "THEFT", "summary": "Online report", "status": "open",
            "grading": { "raw": grade }
        }),
        log_entry: None,
    };
    let payload = storm.prepare_message(&message).expect("maps");
    let ctx = DeliveryContext {
        idempotency_key: id.into(),
        correlation_id: id.into(),
    };
    storm
        .send_message(&payload, &ctx)
        .await
        .expect("created")
        .incident_number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_grading_and_log_entries_become_incident_events() {
    let sim = StormSim::start(StormSimOptions::default())
        .await
        .expect("storm");
    let rig = DetectRig::start(|c, _, _| {
        if let Some(f) = c.forces.get_mut(FORCE) {
            f.command_control = Some(storm(&sim));
        }
    })
    .await;
    let client = StormClient::new(
        StormConfig::new(sim.base_url()),
        Arc::new(mappings::Mappings::builtin().expect("mappings")),
    )
    .expect("storm client");
    let number = create_incident(&client, "m-1", "3").await;
    wait_for(
        &rig.ihub,
        "the first grading",
        1,
        has(&number, "INCIDENT_GRADED"),
    )
    .await;

    sim.regrade(&number, "1").expect("regrade");
    wait_for(&rig.ihub, "the regrade", 2, has(&number, "INCIDENT_GRADED")).await;
    sim.operator_log(&number, "Caller rang back with a description")
        .expect("log");
    let text_is = |e: &SeenEvent| {
        e.event_type == "INCIDENT_LOG_ENTRY"
            && e.payload["entry"]["text"] == "Caller rang back with a description"
    };
    wait_for(&rig.ihub, "the operator's log entry", 1, text_is).await;

    let events = seen(&rig.ihub);
    let graded: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "INCIDENT_GRADED")
        .collect();
    assert_eq!(graded.len(), 2, "{events:#?}");
    assert_eq!(graded[1].payload["grading"]["raw"], "1");
    assert_eq!(graded[1].payload["previous"]["raw"], "3");
    assert_eq!(events.iter().filter(|e| text_is(e)).count(), 1);
    assert_no_duplicates(&events, &rig.ihub);
    rig.stop().await;
    sim.shutdown().await;
}

/// When a change of the swap test is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Paced, while the warehouse is the source.
    Before,
    /// In one burst right before the cut-over: the warehouse (watermark lag) has not reported
    /// these yet, and their cases change no more afterwards, so only the hand-over's overlap
    /// can find them.
    Burst,
    /// Paced, after the cut-over to Athena.
    After,
}

/// The changes of the swap test: each (case, field group) changes at most once, so every real
/// change is exactly one event however the polls fall; three are no-ops.
fn stream() -> Vec<(Phase, Mutation, Option<&'static str>)> {
    use Phase::*;
    vec![
        (
            Before,
            officer(R3, "OFF-1003", "2026-03-01T09:00:00Z"),
            Some("CASE_ALLOCATED"),
        ),
        (
            Before,
            status(R3, "CSTS_0002", "2026-03-01T09:00:01Z"),
            Some("CASE_STATUS_CHANGED"),
        ),
        (Before, update(R1, "2026-03-01T09:00:02Z"), None),
        (
            Before,
            officer(R2, "OFF-1004", "2026-03-01T09:00:03Z"),
            Some("CASE_OIC_CHANGED"),
        ),
        (
            Before,
            status(R5, "CSTS_0002", "2026-03-01T09:00:04Z"),
            Some("CASE_STATUS_CHANGED"),
        ),
        (Before, outcome(R1, "14", "2026-03-01T09:00:05Z"), None),
        (Burst, status(R4, "CSTS_0004", "2026-03-01T09:00:06Z"), None),
        (
            Burst,
            officer(R4, "OFF-1001", "2026-03-01T09:00:07Z"),
            Some("CASE_OIC_CHANGED"),
        ),
        (
            Burst,
            officer(R6, "OFF-1006", "2026-03-01T09:00:08Z"),
            Some("CASE_OIC_CHANGED"),
        ),
        (
            Burst,
            status(R6, "CSTS_0004", "2026-03-01T09:00:09Z"),
            Some("CASE_STATUS_CHANGED"),
        ),
        (
            After,
            outcome(R2, "21", "2026-03-01T09:00:10Z"),
            Some("CASE_OUTCOME_ASSIGNED"),
        ),
        (
            After,
            outcome(R5, "1", "2026-03-01T09:00:11Z"),
            Some("CASE_OUTCOME_ASSIGNED"),
        ),
        (
            After,
            status(R1, "CSTS_0004", "2026-03-01T09:00:12Z"),
            Some("CASE_STATUS_CHANGED"),
        ),
        (
            After,
            outcome(R3, "16", "2026-03-01T09:00:13Z"),
            Some("CASE_OUTCOME_ASSIGNED"),
        ),
        (
            After,
            status(R2, "CSTS_0003", "2026-03-01T09:00:14Z"),
            Some("CASE_STATUS_CHANGED"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_to_athena_swap_during_a_stream_of_changes_misses_and_repeats_nothing() {
    let dataset = Dataset::builtin();
    let dw = Warehouse::create().await.expect("warehouse");
    dw.load_dataset(&dataset).await.expect("warehouse loads");
    // The swapping gateway starts on the warehouse; its Athena holds the same facts.
    let swapping = DetectRig::start(|c, _, ihub| {
        c.forces.insert(
            FORCE.into(),
            detecting_force("Testshire", IHUB_FORCE_ID, warehouse_records(&dw), ihub),
        );
    })
    .await;
    swapping.athena.load_dataset(&dataset);
    // A second gateway reads only Athena: the reference event stream.
    let reference = DetectRig::start(|_, _, _| {}).await;
    reference.athena.load_dataset(&dataset);
    for rig in [&swapping, &reference] {
        wait_for(&rig.ihub, "every case recorded", 6, |e| {
            e.event_type == "CASE_RECORDED"
        })
        .await;
    }

    let changes = stream();
    let mut swapped = false;
    for (phase, m, _) in &changes {
        if *phase == Phase::After && !swapped {
            swapped = true;
            // Cut-over right after the burst: the same force, now on Athena directly.
            let url = swapping.athena.base_url();
            swapping.change_config(|c| {
                if let Some(f) = c.forces.get_mut(FORCE) {
                    f.records = adapters::RecordSystemConfig::Athena(
                        adapters::athena::AthenaConfig::new(url),
                    );
                }
            });
            let (code, body) = swapping.reload().await;
            assert_eq!(code, 200, "{body}");
            assert_eq!(
                body["data"]["attributes"]["recordsSwapped"],
                json!([format!("{FORCE}: athena_dw → athena")])
            );
        }
        dw.apply(m).await.expect("warehouse applies");
        swapping.athena.apply(m).expect("athena applies");
        reference.athena.apply(m).expect("reference applies");
        if *phase != Phase::Burst {
            // Pace the stream so it spans several polls on both sides of the cut-over.
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
    }

    let mut expected: BTreeMap<(String, String), usize> = dataset
        .crimes
        .iter()
        .map(|c| ((c.crime_reference.clone(), "CASE_RECORDED".into()), 1))
        .collect();
    for (_, m, ty) in &changes {
        if let Some(ty) = ty {
            *expected
                .entry((m.crime_reference().to_owned(), (*ty).to_owned()))
                .or_insert(0) += 1;
        }
    }
    let total: usize = expected.values().sum();
    for (name, rig) in [("swapping", &swapping), ("reference", &reference)] {
        eventually(&format!("{name}: every expected event"), secs(60), || {
            let got = seen(&rig.ihub).len();
            async move {
                if got >= total {
                    Ok(())
                } else {
                    Err(format!("{got} of {total}"))
                }
            }
        })
        .await;
    }
    // The last change of the stream was looked at on both sides; every earlier one with it.
    let a = seen(&swapping.ihub);
    let b = seen(&reference.ihub);
    assert_eq!(tally(&a), expected, "swapping gateway: {a:#?}");
    assert_eq!(tally(&b), expected, "reference gateway: {b:#?}");
    assert_no_duplicates(&a, &swapping.ihub);
    assert_no_duplicates(&b, &reference.ihub);
    // The same events, id for id and document for document, through either adapter.
    let by_id = |v: &[SeenEvent]| {
        v.iter()
            .map(|e| (e.id.clone(), (e.event_type.clone(), e.payload.clone())))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(by_id(&a), by_id(&b));

    swapping.stop().await;
    reference.stop().await;
    dw.drop_database().await.expect("dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_waits_for_the_lease_and_takes_over_when_it_lapses() {
    use gateway::detect::Detector;
    let athena = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena");
    let ihub = IhubSim::start(IhubSimOptions::default())
        .await
        .expect("ihub");
    athena.load_dataset(&Dataset::builtin());
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("j.db").display());
    let journal = replay::open(&url, replay::OpenOptions::default())
        .await
        .expect("journal");
    let mappings = Arc::new(mappings::Mappings::builtin().expect("mappings"));
    let records = athena_records(&athena).build(mappings).expect("records");
    let mut cfg = nmpp_tests::detect::fast_detection();
    cfg.lease_ms = 60_000;
    let node = |name: &str| {
        Detector::new(
            FORCE,
            IHUB_FORCE_ID,
            cfg.clone(),
            records.clone(),
            None,
            journal.clone(),
            Arc::new(tokio::sync::Notify::new()),
            name,
        )
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let first = a.poll().await.expect("a polls");
    assert!(first.leader);
    assert_eq!(first.events, 6, "{first:?}");
    let second = b.poll().await.expect("b polls");
    assert!(!second.leader, "b must wait while a holds the lease");
    assert_eq!(second.events, 0);
    // a stops cleanly and gives the lease up; b takes over where a left off.
    drop(a);
    let lease = journal
        .state_get(&format!("detect/{FORCE}"), "lease")
        .await
        .expect("read")
        .expect("lease");
    journal
        .state_put(
            &format!("detect/{FORCE}"),
            "lease",
            Some(lease.version),
            br#"{"owner":"node-a","until_ms":0}"#.to_vec(),
        )
        .await
        .expect("lapse the lease");
    athena
        .apply(&status(R3, "CSTS_0002", "2026-03-01T09:00:00Z"))
        .expect("applies");
    let third = b.poll().await.expect("b polls");
    assert!(third.leader);
    assert_eq!(third.events, 1, "only the new change: {third:?}");
    drop(ihub);
}

/// The counter `gateway_config_reloads_total{outcome=…}` as the gateway's `/metrics` shows it.
async fn reloads(api: &nmpp_tests::Api, outcome: &str) -> u64 {
    let text = api
        .get("/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("gateway_config_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_re_reads_the_file_refuses_a_broken_one_and_applies_a_good_one() {
    let first = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena");
    let second = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena");
    let mut gw = nmpp_tests::ProcessGateway::new(&first.base_url());
    gw.start().await;
    let api = gw.api();
    let hup = |pid: Option<u32>| {
        let pid = pid.expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -HUP {pid}");
    };
    let deliver = |to: &'static str| {
        let api = api.clone();
        async move {
            let doc = nmpp_tests::sdm::online_crime_report();
            let key = nmpp_tests::sdm::submission_id(&doc);
            let accepted = api.submit_ok(&doc).await;
            api.wait_for_status(&accepted.exchange_id, "delivered", secs(30))
                .await;
            (to, key)
        }
    };
    let (_, key) = deliver("first").await;
    assert!(first.record_by_key(&key).is_some());

    // A broken file: refused, named in the log, and the gateway goes on as it was.
    let good = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(gw.config_path(), format!("{good}\n[bogus]\nkey = 1\n")).expect("write");
    hup(gw.pid());
    eventually("the reload refused", secs(30), || {
        let api = api.clone();
        async move {
            match reloads(&api, "rejected").await {
                1 => Ok(()),
                n => Err(format!("{n} rejected")),
            }
        }
    })
    .await;
    assert!(gw.stderr_log().contains("bogus"), "{}", gw.stderr_log());
    let (_, key) = deliver("first").await;
    assert!(
        first.record_by_key(&key).is_some(),
        "still the first Athena"
    );

    // A good file pointing the force at another Athena: applied without a restart.
    let mut config = gw.config.clone();
    if let Some(f) = config.forces.get_mut(FORCE) {
        f.records = adapters::RecordSystemConfig::Athena(adapters::athena::AthenaConfig::new(
            second.base_url(),
        ));
    }
    nmpp_tests::write_config(&config, gw.config_path());
    hup(gw.pid());
    eventually("the reload applied", secs(30), || {
        let api = api.clone();
        async move {
            match reloads(&api, "applied").await {
                1 => Ok(()),
                n => Err(format!("{n} applied")),
            }
        }
    })
    .await;
    let (_, key) = deliver("second").await;
    assert!(
        second.record_by_key(&key).is_some(),
        "now the second Athena"
    );
    assert!(first.record_by_key(&key).is_none());
    assert_eq!(gw.starts, 1, "no restart");
    gw.kill().await;
    // Both reloads are in the audit trail, the refused one as a failure.
    let journal = replay::open(
        &format!("sqlite://{}", gw.journal_path().display()),
        replay::OpenOptions::default(),
    )
    .await
    .expect("journal");
    let results: Vec<String> = journal
        .audit_records(1, 10_000)
        .await
        .expect("audit")
        .into_iter()
        .filter(|r| r.event.action == "config.reload")
        .map(|r| format!("{} {}", r.event.actor, r.event.result))
        .collect();
    assert_eq!(results, ["signal failure", "signal success"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_journal_detect_every_change_once() {
    use gateway::detect::Detector;
    // A fresh PostgreSQL journal database, dropped at the end.
    let admin_url = std::env::var("NMPP_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    tokio::spawn(conn);
    let name = format!("nmpp_detect_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap_or(0)]);

    let athena = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena");
    let dataset = Dataset::builtin();
    athena.load_dataset(&dataset);
    let mappings = Arc::new(mappings::Mappings::builtin().expect("mappings"));
    let records = athena_records(&athena).build(mappings).expect("records");
    let mut cfg = nmpp_tests::detect::fast_detection();
    // Short enough that the lease moves between the nodes during the test.
    cfg.lease_ms = 100;
    let mut nodes = Vec::new();
    for n in ["node-a", "node-b"] {
        // Each node has its own journal handle (its own pool), as two processes would.
        let journal = replay::open(&url, replay::OpenOptions::default())
            .await
            .expect("journal");
        nodes.push(Arc::new(Detector::new(
            FORCE,
            IHUB_FORCE_ID,
            cfg.clone(),
            records.clone(),
            None,
            journal,
            Arc::new(tokio::sync::Notify::new()),
            n,
        )));
    }
    let changes = stream();
    let mut leaders = BTreeSet::new();
    // Record every case first (a case first seen after a change is recorded with it, in
    // `case.recorded`, and that change is no event of its own).
    let mut events = nodes[0].poll().await.expect("first poll").events;
    assert_eq!(events, dataset.crimes.len());
    for (i, (_, m, _)) in changes.iter().enumerate() {
        athena.apply(m).expect("applies");
        // Both nodes poll at once; every few changes the lease lapses so the other may take it.
        let (a, b) = (nodes[0].clone(), nodes[1].clone());
        let (ra, rb) = tokio::join!(a.poll(), b.poll());
        for (who, r) in [
            ("node-a", ra.expect("a polls")),
            ("node-b", rb.expect("b polls")),
        ] {
            if r.leader {
                leaders.insert(who);
            }
            events += r.events;
        }
        if i % 4 == 3 {
            // Let the lease lapse and have the other node poll first: leadership moves.
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let (who, next) = if (i / 4) % 2 == 0 {
                ("node-b", &nodes[1])
            } else {
                ("node-a", &nodes[0])
            };
            let r = next.poll().await.expect("polls");
            if r.leader {
                leaders.insert(who);
            }
            events += r.events;
        }
    }
    // Drain: poll until nothing more is due.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        for n in &nodes {
            events += n.poll().await.expect("polls").events;
        }
    }
    let expected = dataset.crimes.len() + changes.iter().filter(|c| c.2.is_some()).count();
    assert_eq!(
        events, expected,
        "events journalled by the two nodes together"
    );
    let journal = replay::open(&url, replay::OpenOptions::default())
        .await
        .expect("journal");
    let filter = replay::ExchangeFilter {
        force: Some(FORCE.into()),
        ..replay::ExchangeFilter::default()
    };
    assert_eq!(
        journal.count(&filter).await.expect("count"),
        expected as u64
    );
    assert_eq!(
        leaders.len(),
        2,
        "the lease moved between the nodes: {leaders:?}"
    );
    drop((nodes, journal));
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_change_detection_problems_and_accepts_a_good_section() {
    let dir = tempfile::tempdir().expect("dir");
    let run = |text: String| {
        let path = dir.path().join("gw.toml");
        async move {
            std::fs::write(&path, text).expect("write");
            let out = tokio::process::Command::new(nmpp_tests::gateway_bin())
                .arg("check-config")
                .arg(&path)
                .env_remove("NMPP_GATEWAY_CONFIG")
                .output()
                .await
                .expect("runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let force = r#"
[forces.kent]
name = "Kent Police"
ihub_force_id = 46
records = { type = "athena", base_url = "http://127.0.0.1:1" }
"#;
    let broken = format!(
        "{force}\n[forces.kent.change_detection]\npoll_ms = 1000\nlease_ms = 1500\npage_size = 0\n"
    );
    let (code, out) = run(broken).await;
    assert_eq!(code, Some(1), "{out}");
    for key in [
        "forces.kent.change_detection.page_size",
        "forces.kent.change_detection.lease_ms",
        "requires forces.kent.national",
    ] {
        assert!(out.contains(key), "{key} not named: {out}");
    }
    let unknown = format!("{force}\n[forces.kent.change_detection.refresh]\nstatus_mins = 1\n");
    let (code, out) = run(unknown).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("status_mins"), "{out}");

    let good = format!(
        "{force}national = {{ type = \"ihub\", base_url = \"https://ihub.example\", \
         token_url = \"https://ihub.example/token\", client_id = \"force-46\", \
         client_secret = \"s\" }}\n\n[forces.kent.change_detection]\nstart = \"now\"\n\
         [forces.kent.change_detection.refresh]\nofficer_ms = 60000\n"
    );
    let (code, out) = run(good).await;
    assert_eq!(code, Some(0), "{out}");
}

/// `/health/ready` probes every adapter of a force — the records system, the national platform
/// (iHub) and command and control (STORM) — and names the one that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_ihub_and_storm_and_names_the_one_down() {
    let storm_sim = StormSim::start(StormSimOptions::default())
        .await
        .expect("storm");
    let rig = DetectRig::start(|c, _, _| {
        if let Some(f) = c.forces.get_mut(FORCE) {
            f.command_control = Some(storm(&storm_sim));
        }
    })
    .await;
    let api = rig.api();
    // (status, {system → (status, error)}) of this force's adapters.
    let ready = || async {
        let res = api.http.get(api.url("/health/ready")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "an adapter down is never a 503");
        let body: serde_json::Value = res.json().await.unwrap();
        let mut systems = BTreeMap::new();
        for a in body["adapters"].as_array().expect("adapters") {
            assert_eq!(a["force"], FORCE, "{body}");
            systems.insert(
                a["system"].as_str().unwrap_or("").to_owned(),
                (
                    a["status"].as_str().unwrap_or("").to_owned(),
                    a["error"].as_str().map(str::to_owned),
                ),
            );
        }
        (body["status"].as_str().unwrap_or("").to_owned(), systems)
    };
    let up = |s: &BTreeMap<String, (String, Option<String>)>, system: &str| {
        s.get(system).is_some_and(|(st, _)| st == "up")
    };

    let (status, systems) = ready().await;
    assert_eq!(
        systems.keys().map(String::as_str).collect::<Vec<_>>(),
        ["athena", "ihub", "storm"],
        "{systems:?}"
    );
    assert!(systems.values().all(|(s, _)| s == "up"), "{systems:?}");
    assert_eq!(status, "ready");

    // iHub stops listening: degraded, iHub named down by a connection error, the others up.
    rig.ihub.refuse().await;
    eventually("readiness to name iHub down", secs(10), || async {
        let (status, s) = ready().await;
        let ihub_down = s
            .get("ihub")
            .is_some_and(|(st, e)| st == "down" && e.as_deref() == Some("connect"));
        if status == "degraded" && ihub_down && up(&s, "athena") && up(&s, "storm") {
            Ok(())
        } else {
            Err(format!("{status} {s:?}"))
        }
    })
    .await;

    // iHub back, STORM gone: STORM is the one named.
    rig.ihub.accept().await.expect("iHub listens again");
    storm_sim.refuse().await;
    eventually("readiness to name STORM down", secs(10), || async {
        let (status, s) = ready().await;
        let storm_down = s.get("storm").is_some_and(|(st, _)| st == "down");
        if status == "degraded" && storm_down && up(&s, "athena") && up(&s, "ihub") {
            Ok(())
        } else {
            Err(format!("{status} {s:?}"))
        }
    })
    .await;

    storm_sim.accept().await.expect("STORM listens again");
    eventually("readiness to be ready again", secs(10), || async {
        let (status, s) = ready().await;
        if status == "ready" {
            Ok(())
        } else {
            Err(format!("{status} {s:?}"))
        }
    })
    .await;
    rig.stop().await;
}

/// A force added by a configuration reload receives iHub submissions at once (routed by its
/// `ihub_force_id`), without a restart; before the reload the same submission is refused as
/// an unknown force, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_added_by_reload_is_routed_submissions_without_a_restart() {
    const NEW_FORCE: &str = "secondshire";
    const NEW_IHUB_ID: u32 = 77;
    let rig = DetectRig::start(|_, _, _| {}).await;
    let api = rig.api();
    let mut doc = nmpp_tests::sdm::skeleton();
    nmpp_tests::sdm::submission_mut(&mut doc)["attributes"]["forceIdentifier"] =
        json!(NEW_IHUB_ID.to_string());

    let res = api.submit(&doc).await.expect("POST /incidents");
    assert_eq!(res.status().as_u16(), 422);
    let body = res.text().await.unwrap_or_default();
    assert!(body.contains("forceIdentifier"), "{body}");

    rig.change_config(|c| {
        let mut f = c.forces[FORCE].clone();
        f.name = "Secondshire Police".into();
        f.ihub_force_id = NEW_IHUB_ID;
        f.national = None;
        f.change_detection = None;
        c.forces.insert(NEW_FORCE.into(), f);
    });
    let (code, report) = rig.reload().await;
    assert_eq!(code, 200, "{report}");

    let accepted = api.submit_ok(&doc).await;
    let exchange = api.exchange(&accepted.exchange_id).await;
    assert_eq!(exchange["force"], NEW_FORCE, "{exchange}");
    let sid = nmpp_tests::sdm::submission_id(&doc);
    eventually("the new force's record at Athena", secs(20), || async {
        if rig.athena.record_by_key(&sid).is_some() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    rig.stop().await;
}

/// API clients change on reload, without a restart: a client added signs in, a rotated secret
/// replaces the old one at once, a removed client is refused; the reload names `auth` as applied
/// and not as needing a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clients_are_added_rotated_and_removed_by_reload() {
    use gateway::{
        auth::hash_secret,
        config::{ClientConfig, Role},
    };
    let rig = DetectRig::start(|_, _, _| {}).await;
    let client = |secret: &str| ClientConfig {
        secret_sha256: hash_secret(secret),
        roles: vec![Role::Operator],
        forces: vec![FORCE.into()],
        description: "added by reload".into(),
    };
    let status_as = |secret: &'static str| {
        let api = nmpp_tests::Api::new(&rig.base_url, "newcomer", secret);
        async move {
            api.get("/v1/exchanges")
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    const FIRST: &str = "first-secret-0123456789abcdef";
    const SECOND: &str = "second-secret-0123456789abcdef";
    assert_eq!(status_as(FIRST).await, 401, "not configured yet");

    rig.change_config(|c| {
        c.auth.clients.insert("newcomer".into(), client(FIRST));
    });
    let (code, report) = rig.reload().await;
    assert_eq!(code, 200, "{report}");
    let applied = &report["data"]["attributes"];
    assert_eq!(applied["authReloaded"], true, "{report}");
    assert!(
        !applied["restartNeeded"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "auth")),
        "{report}"
    );
    assert_eq!(status_as(FIRST).await, 200, "added by the reload");

    rig.change_config(|c| {
        c.auth.clients.insert("newcomer".into(), client(SECOND));
    });
    assert_eq!(rig.reload().await.0, 200);
    assert_eq!(
        status_as(FIRST).await,
        401,
        "the old secret no longer works"
    );
    assert_eq!(status_as(SECOND).await, 200, "the rotated secret works");

    rig.change_config(|c| {
        c.auth.clients.remove("newcomer");
    });
    assert_eq!(rig.reload().await.0, 200);
    assert_eq!(status_as(SECOND).await, 401, "removed by the reload");
    // The clients that stayed are untouched.
    assert_eq!(
        rig.api()
            .get("/v1/exchanges")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    rig.stop().await;
}
