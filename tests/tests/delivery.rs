//! Delivery policy per target, black box (issue 3 §3): the real `nmpp-gateway` binary delivering
//! to a real Athena simulator with injected faults.
//!
//! - a `[delivery.targets.athena]` table overrides `[delivery]` (attempts, attempt timeout);
//! - an attempt slower than `attempt_timeout_ms` is a retryable `timeout` failure;
//! - a long outage (shortened: seconds, with a breaker open time of a second): the breaker opens
//!   and is seen open in `/health/ready` and `/metrics`, work of the failing target waits
//!   unclaimed, and after recovery the breaker closes, every exchange is delivered exactly once,
//!   and poison exchanges (rejected by Athena with a 4xx) are parked without holding up the rest.
//!
//! No assertion depends on how long anything takes: every wait is a poll with a generous
//! deadline.

use fixtures::athena::{AthenaSim, AthenaSimOptions};
use gateway::config::TargetOverride;
use nmpp_tests::{Api, ProcessGateway, eventually, sdm, secs};
use serde_json::Value;
use std::time::Duration;

/// The `athena` adapter's entry in `GET /health/ready`.
async fn athena_health(api: &Api) -> Value {
    let res = api
        .get("/health/ready")
        .send()
        .await
        .expect("GET /health/ready");
    let doc: Value = res.json().await.expect("readiness is JSON");
    doc["adapters"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["system"] == "athena"))
        .cloned()
        .unwrap_or_else(|| panic!("no athena adapter in {doc:#}"))
}

/// Waits until the Athena breaker shows `state` in `/health/ready`.
async fn breaker_becomes(api: &Api, state: &str, timeout: Duration) -> Value {
    eventually(
        &format!("the athena breaker to be {state}"),
        timeout,
        || async {
            let a = athena_health(api).await;
            if a["breaker"] == state {
                Ok(a)
            } else {
                Err(a.to_string())
            }
        },
    )
    .await
}

/// The value of `gateway_breaker_state` for the test force's Athena in `/metrics`.
async fn breaker_gauge(api: &Api) -> Option<f64> {
    let text = api
        .get("/metrics")
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| {
            l.starts_with("gateway_breaker_state{")
                && l.contains(&format!("force=\"{}\"", nmpp_tests::FORCE))
                && l.contains("target=\"athena\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of counter `name` for the test force's Athena in `/metrics` (0 when absent).
async fn athena_counter(api: &Api, name: &str) -> f64 {
    let text = api
        .get("/metrics")
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains(&format!("force=\"{}\"", nmpp_tests::FORCE))
                && l.contains("target=\"athena\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// An Online Crime Report that Athena rejects (422, `INVALID_FORMAT`): the victim's email is not
/// an address. The gateway accepts it (the SDM allows any string) and the mapping carries it
/// through, so only the target can refuse it — a poison exchange.
fn poison_doc() -> Value {
    let mut doc = sdm::online_crime_report();
    let email = doc["included"]
        .as_array_mut()
        .expect("included is an array")
        .iter_mut()
        .find(|r| r["type"] == "email")
        .expect("the example has an email resource");
    email["attributes"]["emailAddress"] = Value::String("not-an-email-address".into());
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_override_and_its_attempt_timeout_are_honoured() {
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::with_config(&sim.base_url(), |c| {
        // [delivery] allows 8 attempts; Athena's table allows 2, each at most 300 ms (the
        // adapter's own HTTP timeout is 5 s).
        c.delivery.max_attempts = 8;
        c.delivery.targets.insert(
            "athena".into(),
            TargetOverride {
                max_attempts: Some(2),
                attempt_timeout_ms: Some(300),
                breaker_failures: Some(0),
                ..TargetOverride::default()
            },
        );
    });
    gw.start().await;
    let api = gw.api();
    // Athena takes 3 s to answer anything.
    sim.set_delay(Duration::from_secs(3));

    let doc = sdm::online_crime_report();
    let id = api.submit_ok(&doc).await.exchange_id;
    let parked = api.wait_for_status(&id, "parked", secs(30)).await;
    let attempts = parked["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "the target's max_attempts: {parked:#}");
    assert_eq!(attempts[0]["outcome"], "retry");
    assert_eq!(attempts[1]["outcome"], "parked");
    for a in attempts {
        assert_eq!(a["errorClass"], "timeout", "{a}");
        assert!(
            a["detail"]
                .as_str()
                .is_some_and(|d| d.contains("attempt timeout of 300 ms")),
            "{a}"
        );
    }
    assert_eq!(parked["lastErrorClass"], "timeout");

    // Athena is fast again: a replay goes through with the same idempotency key.
    sim.set_delay(Duration::ZERO);
    let child = api.replay(&id).await;
    let child = api.wait_for_status(&child, "delivered", secs(30)).await;
    assert_eq!(child["idempotencyKey"], sdm::submission_id(&doc).as_str());
    assert!(sim.record_by_key(&sdm::submission_id(&doc)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_opens_the_breaker_and_everything_is_delivered_after_it() {
    const GOOD: usize = 30;
    const POISON: usize = 3;
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::with_config(&sim.base_url(), |c| {
        c.delivery.targets.insert(
            "athena".into(),
            TargetOverride {
                // Enough attempts that the outage, shortened to seconds, parks nothing good:
                // with the breaker, only probes are charged attempts.
                max_attempts: Some(1000),
                breaker_failures: Some(3),
                breaker_open_ms: Some(1000),
                breaker_half_open_probes: Some(1),
                ..TargetOverride::default()
            },
        );
    });
    gw.start().await;
    let api = gw.api();
    assert_eq!(athena_health(&api).await["breaker"], "closed");
    assert_eq!(breaker_gauge(&api).await, Some(0.0));

    // Athena goes away (connections refused). Submissions are still accepted.
    sim.refuse().await;
    let mut good = Vec::new();
    let mut poison = Vec::new();
    for i in 0..GOOD + POISON {
        if i % 11 == 5 {
            poison.push(api.submit_ok(&poison_doc()).await.exchange_id);
        } else {
            let doc = sdm::online_crime_report();
            let id = api.submit_ok(&doc).await.exchange_id;
            good.push((id, sdm::submission_id(&doc)));
        }
    }
    assert_eq!((good.len(), poison.len()), (GOOD, POISON));

    // Three refused connections open the breaker; readiness and the gauge show it.
    let seen = breaker_becomes(&api, "open", secs(30)).await;
    assert_eq!(seen["status"], "down", "{seen}");
    assert_eq!(breaker_gauge(&api).await, Some(2.0));
    // While it is open the target's work waits unclaimed: most exchanges have not been tried at
    // all (only the first few and one probe per second were).
    let pending = api.exchanges("status=pending&limit=1000").await;
    assert_eq!(pending.len(), GOOD + POISON, "nothing is lost or parked");
    let untried = pending.iter().filter(|e| e["attemptCount"] == 0).count();
    assert!(
        untried >= (GOOD + POISON) / 2,
        "{untried} of {} untried while the breaker is open",
        pending.len()
    );
    // After each open period the breaker goes half-open, lets one probe through, the probe is
    // refused and it opens again (half-open lasts only as long as a refused connection, too
    // short to poll for, so the log tells): the outage goes on for several open periods.
    eventually(
        "the breaker to reopen twice after probes",
        secs(60),
        || async {
            let n = gw.stderr_log().matches("circuit breaker opened").count();
            if n >= 3 {
                Ok(())
            } else {
                Err(format!("opened {n} times"))
            }
        },
    )
    .await;
    assert_eq!(
        api.exchanges("status=parked&limit=1000").await.len(),
        0,
        "the outage parks nothing"
    );
    // Half-open, the dispatcher claimed more of the target's due work than the one probe it
    // lets through, and put the rest back uncharged.
    assert!(
        athena_counter(&api, "gateway_delivery_deferred_total").await > 0.0,
        "nothing was put back by the half-open breaker"
    );

    // Athena is back. The next probe succeeds and closes the breaker; everything flows.
    sim.accept().await.unwrap();
    breaker_becomes(&api, "closed", secs(60)).await;
    for (id, key) in &good {
        let e = api.wait_for_status(id, "delivered", secs(60)).await;
        let rec = sim
            .record_by_key(key)
            .unwrap_or_else(|| panic!("{id} delivered but not at Athena"));
        assert_eq!(e["targetRef"], rec.crime_reference.as_str());
    }
    // Each good exchange is one record at Athena (the poison ones none).
    assert_eq!(sim.records().len(), GOOD);
    // The poison exchanges are parked, rejected by Athena; they did not hold up the others.
    for id in &poison {
        let e = api.wait_for_status(id, "parked", secs(60)).await;
        assert_eq!(e["lastErrorClass"], "rejected", "{e:#}");
        let attempts = e["attempts"].as_array().expect("attempts");
        let last = attempts.last().expect("at least one attempt");
        assert_eq!(last["httpStatus"], 422, "{last}");
        assert!(
            attempts[..attempts.len() - 1]
                .iter()
                .all(|a| a["errorClass"] == "connect"),
            "only the outage failed them before: {attempts:#?}"
        );
    }
    // The rejections after recovery did not open the breaker: a 4xx is the exchange's fault, and
    // shows the target is answering.
    let end = athena_health(&api).await;
    assert_eq!(end["breaker"], "closed", "{end}");
    assert_eq!(end["status"], "up", "{end}");
    assert_eq!(breaker_gauge(&api).await, Some(0.0));
    let log = gw.stderr_log();
    for line in [
        "circuit breaker opened",
        "circuit breaker half-open",
        "circuit breaker closed",
    ] {
        assert!(log.contains(line), "{line:?} not logged");
    }
}

/// An Online Crime Report in case `case` (its `customerReferenceNumber`).
fn in_case(case: &str) -> Value {
    let mut doc = sdm::online_crime_report();
    sdm::submission_mut(&mut doc)["attributes"]["customerReferenceNumber"] =
        Value::String(case.to_owned());
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_target_gets_each_case_in_order_and_a_parked_one_does_not_block() {
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::with_config(&sim.base_url(), |c| {
        c.delivery.targets.insert(
            "athena".into(),
            TargetOverride {
                ordered_by_case: Some(true),
                ..TargetOverride::default()
            },
        );
    });
    gw.start().await;
    let api = gw.api();
    let case = format!("TYA-{}", uuid::Uuid::new_v4().simple());

    // The first of the case fails three times before it is delivered; the second, journalled
    // after it, is not tried until then (had it been, it would have met one of the faults).
    sim.fail_next(3, 503);
    let first_doc = in_case(&case);
    let first = api.submit_ok(&first_doc).await.exchange_id;
    let second_doc = in_case(&case);
    let second = api.submit_ok(&second_doc).await.exchange_id;
    let a = api.wait_for_status(&first, "delivered", secs(30)).await;
    let b = api.wait_for_status(&second, "delivered", secs(30)).await;
    assert_eq!(a["attemptCount"], 4, "{a:#}");
    assert_eq!(b["attemptCount"], 1, "{b:#}");
    assert_eq!(sim.stats().faults_served, 3);
    let ra = sim.record_by_key(&sdm::submission_id(&first_doc)).unwrap();
    let rb = sim.record_by_key(&sdm::submission_id(&second_doc)).unwrap();
    assert!(ra.created_at <= rb.created_at, "delivered out of order");

    // The next of the case is rejected (poison) and parked: parked exchanges never block, so
    // the one after it is delivered, at its first attempt.
    let case2 = format!("TYA-{}", uuid::Uuid::new_v4().simple());
    sim.reject_next(1, 422);
    let poison = api.submit_ok(&in_case(&case2)).await.exchange_id;
    let after_doc = in_case(&case2);
    let after = api.submit_ok(&after_doc).await.exchange_id;
    let p = api.wait_for_status(&poison, "parked", secs(30)).await;
    assert_eq!(p["lastErrorClass"], "rejected");
    let d = api.wait_for_status(&after, "delivered", secs(30)).await;
    assert_eq!(d["attemptCount"], 1, "{d:#}");
    assert!(sim.record_by_key(&sdm::submission_id(&after_doc)).is_some());
}
