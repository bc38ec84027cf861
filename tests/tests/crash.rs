//! Crash safety of the real binary: concurrent submissions, `kill -9` at a random moment, restart
//! on the same journal and port — at least 20 times (`NMPP_CRASH_CYCLES`, default 20;
//! `ops/crash-loop.sh` runs 100). Every submission that got a 201 must be in the journal and
//! reach Athena exactly once. The same on PostgreSQL, with two nodes: `crash_pg.rs`.

use fixtures::athena::{AthenaSim, AthenaSimOptions};
use nmpp_tests::{ProcessGateway, sdm, secs};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

const CLIENTS: usize = 8;

fn cycles() -> usize {
    std::env::var("NMPP_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// A random number below `n` (test-only randomness from UUID v4 bits).
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

#[derive(Default)]
struct Ledger {
    /// submissionId → exchange id, for every 201.
    acked: Mutex<HashMap<String, String>>,
    /// Anything other than a 201 or a connection failure.
    unexpected: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_submissions_survive_kill_9_and_are_delivered_exactly_once() {
    let started = Instant::now();
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    // Retries never run out here: a delivery that fails is always pending, never parked.
    let mut gw = ProcessGateway::with_config(&sim.base_url(), |c| c.delivery.max_attempts = 1000);
    let port = gw.config.http.listen.port();
    let ledger = Arc::new(Ledger::default());
    let mut per_cycle = Vec::new();
    let cycles = cycles();

    for cycle in 0..cycles {
        // A few refused deliveries each cycle, so that some kills land while retries are
        // scheduled.
        sim.fail_next(random_below(6) as u32, 503);
        gw.start().await;
        assert_eq!(gw.config.http.listen.port(), port, "same port every cycle");
        let api = gw.api();
        let stop = Arc::new(AtomicBool::new(false));
        let acked_now = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (api, stop, ledger, acked_now) =
                    (api.clone(), stop.clone(), ledger.clone(), acked_now.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let doc = if c % 2 == 0 {
                            sdm::online_crime_report()
                        } else {
                            sdm::skeleton()
                        };
                        let sid = sdm::submission_id(&doc);
                        match api.submit(&doc).await {
                            Ok(res) if res.status() == 201 => {
                                // The 201 is in hand; the body may still be cut off by the kill.
                                let Ok(body) = res.json::<serde_json::Value>().await else {
                                    ledger.acked.lock().unwrap().insert(sid, String::new());
                                    break;
                                };
                                let id = body["data"]["id"].as_str().unwrap_or("").to_owned();
                                ledger.acked.lock().unwrap().insert(sid, id);
                                acked_now.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(res) => {
                                let status = res.status();
                                let text = res.text().await.unwrap_or_default();
                                ledger
                                    .unexpected
                                    .lock()
                                    .unwrap()
                                    .push(format!("cycle {cycle}: {status} {text}"));
                            }
                            // The process was killed under us.
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();

        // Kill mid-stream: once submissions are flowing, after a random extra moment.
        nmpp_tests::eventually("the first 201s of the cycle", secs(30), || async {
            if acked_now.load(Ordering::Relaxed) > 0 {
                Ok(())
            } else {
                Err("no 201 yet".into())
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(400))).await;
        gw.kill().await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            tokio::time::timeout(secs(30), c)
                .await
                .expect("a client did not notice the kill")
                .unwrap();
        }
        per_cycle.push(acked_now.load(Ordering::Relaxed));
    }

    // Last start: everything acknowledged must now be delivered.
    gw.start().await;
    let acked = ledger.acked.lock().unwrap().clone();
    let unexpected = ledger.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "answers other than 201: {unexpected:#?}"
    );
    assert!(
        per_cycle.iter().all(|&n| n > 0),
        "a cycle without traffic: {per_cycle:?}"
    );

    let api = gw.api();
    nmpp_tests::eventually("every exchange to leave pending", secs(60), || async {
        let pending = api.exchanges("status=pending&limit=10").await;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("{} pending, e.g. {}", pending.len(), pending[0]))
        }
    })
    .await;

    let checked = nmpp_tests::check_acknowledged_delivered_once(&gw, &sim, &acked).await;
    let stats = checked.stats;
    assert!(
        stats.faults_served > 0,
        "no retries were exercised: {stats:?}"
    );

    gw.kill().await;
    eprintln!(
        "crash test (sqlite): {cycles} kill -9 cycles, {} acknowledged, {} journalled, {} Athena \
         duplicates dropped, {} faults served, per cycle {per_cycle:?}, {:?}",
        acked.len(),
        checked.journalled,
        stats.duplicates,
        stats.faults_served,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::new(&sim.base_url());
    gw.start().await;
    let api = gw.api();
    // Deliveries in flight when the signal arrives take 300 ms to answer.
    sim.set_delay(Duration::from_millis(300));
    let mut acked = Vec::new();
    for _ in 0..5 {
        let doc = sdm::skeleton();
        api.submit_ok(&doc).await;
        acked.push(sdm::submission_id(&doc));
    }
    let status = gw.terminate(secs(20)).await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        gw.stderr_log()
    );
    assert!(
        gw.stderr_log().contains("shutting down"),
        "{}",
        gw.stderr_log()
    );

    // Deliveries in flight were finished and journalled, not cut off: everything Athena holds
    // is recorded as delivered.
    let rows = gw.cli(&["exchanges", "list", "--json"]).await.json();
    let delivered: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "delivered")
        .collect();
    assert_eq!(rows.as_array().unwrap().len(), 5);
    assert_eq!(delivered.len(), sim.records().len(), "{rows:#}");

    // Whatever was not delivered before the stop is delivered after the restart.
    sim.set_delay(Duration::ZERO);
    gw.start().await;
    let api = gw.api();
    nmpp_tests::eventually("all five delivered", secs(30), || async {
        let delivered = api.exchanges("status=delivered&limit=100").await.len();
        if delivered == 5 {
            Ok(())
        } else {
            Err(format!("{delivered} delivered"))
        }
    })
    .await;
    for sid in &acked {
        assert!(sim.record_by_key(sid).is_some(), "{sid} not at Athena");
    }
    assert_eq!(sim.stats().created, 5);
    assert_eq!(sim.stats().duplicates, 0, "no delivery was repeated");
    gw.kill().await;
}
