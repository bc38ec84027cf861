//! Crash safety of the real binary on the PostgreSQL journal (issue 3):
//!
//! - one node: concurrent submissions, `kill -9` at a random moment, restart — at least 20 times;
//! - two nodes sharing one database, killed alternately while the other keeps working, and at the
//!   end one node killed while its deliveries are in flight: the survivor takes the dead node's
//!   leased work over once the lease expires and delivers it with the same idempotency key;
//! - PostgreSQL itself stopped mid-load (a private server of the test's own, `pg_ctl stop -m
//!   immediate`): the gateway answers 503 with `Retry-After`, never 201, while it cannot persist,
//!   and recovers by itself when the server is back.
//!
//! In every case: each submission that got a 201 is in the journal and reaches Athena, and
//! Athena holds exactly one record per idempotency key, each of them journalled once.
//! `NMPP_CRASH_CYCLES` sets the number of kill cycles (default 20; `ops/crash-loop.sh` runs 100).

use fixtures::athena::{AthenaSim, AthenaSimOptions};
use gateway::config::Config;
use nmpp_tests::{
    Api, ProcessGateway, header,
    pg::{PrivateCluster, TestDb},
    sdm, secs,
};
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

const CLIENTS: usize = 8;
/// Lease of a claimed exchange in these tests: short, so a dead node's work is taken over soon.
const LEASE_MS: u64 = 3_000;

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

/// The test configuration on the PostgreSQL journal at `url`, with a short lease and retries
/// that never run out (a delivery that fails stays pending, it is never parked).
fn on_postgres(url: &str) -> impl FnOnce(&mut Config) + use<> {
    let url = url.to_owned();
    move |c: &mut Config| {
        c.journal.url = url;
        c.delivery.max_attempts = 1000;
        c.delivery.lease_ms = LEASE_MS;
    }
}

#[derive(Default)]
struct Ledger {
    /// submissionId → exchange id (empty if the body was cut off), for every 201.
    acked: Mutex<HashMap<String, String>>,
    /// Anything other than a 201 or a connection failure.
    unexpected: Mutex<Vec<String>>,
}

impl Ledger {
    fn ack(&self, sid: String, id: String) {
        self.acked.lock().unwrap().insert(sid, id);
    }
}

/// Submits one fresh document; records a 201 in `ledger`. `Err` when the connection failed
/// (the process was killed under us).
async fn submit_one(api: &Api, c: usize, ledger: &Ledger, what: &str) -> Result<bool, ()> {
    let doc = if c.is_multiple_of(2) {
        sdm::online_crime_report()
    } else {
        sdm::skeleton()
    };
    let sid = sdm::submission_id(&doc);
    match api.submit(&doc).await {
        Ok(res) if res.status() == 201 => {
            // The 201 is in hand; the body may still be cut off by the kill.
            let Ok(body) = res.json::<Value>().await else {
                ledger.ack(sid, String::new());
                return Err(());
            };
            let id = body["data"]["id"].as_str().unwrap_or("").to_owned();
            ledger.ack(sid, id);
            Ok(true)
        }
        Ok(res) => {
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            ledger
                .unexpected
                .lock()
                .unwrap()
                .push(format!("{what}: {status} {text}"));
            Ok(false)
        }
        Err(_) => Err(()),
    }
}

/// `cycles` kill -9 cycles over `nodes`: every node running, `CLIENTS` clients spread over them
/// submitting concurrently, then the victim of the cycle (node `cycle % nodes.len()`) killed at a
/// random moment once it has acknowledged something, and restarted at the start of the next
/// cycle. Returns the acknowledgements per cycle.
async fn kill_loop(
    nodes: &mut [ProcessGateway],
    sim: &AthenaSim,
    ledger: &Arc<Ledger>,
    cycles: usize,
) -> Vec<usize> {
    let mut per_cycle = Vec::new();
    for cycle in 0..cycles {
        // A few refused deliveries each cycle, so that some kills land while retries are
        // scheduled.
        sim.fail_next(random_below(6) as u32, 503);
        for n in nodes.iter_mut() {
            if !n.is_running() {
                n.start().await;
            }
        }
        let victim = cycle % nodes.len();
        let stop = Arc::new(AtomicBool::new(false));
        let acked_by: Arc<Vec<AtomicUsize>> =
            Arc::new(nodes.iter().map(|_| AtomicUsize::new(0)).collect());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let node = c % nodes.len();
                let api = nodes[node].api();
                let (stop, ledger, acked_by) = (stop.clone(), ledger.clone(), acked_by.clone());
                tokio::spawn(async move {
                    let what = format!("cycle {cycle}, node {node}");
                    while !stop.load(Ordering::Relaxed) {
                        match submit_one(&api, c, &ledger, &what).await {
                            Ok(true) => {
                                acked_by[node].fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(false) => {}
                            Err(()) => break,
                        }
                    }
                })
            })
            .collect();

        // Kill mid-stream: once the victim acknowledges submissions, after a random moment.
        nmpp_tests::eventually("the victim's first 201s of the cycle", secs(30), || async {
            if acked_by[victim].load(Ordering::Relaxed) > 0 {
                Ok(())
            } else {
                Err("no 201 yet".into())
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(400))).await;
        nodes[victim].kill().await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            tokio::time::timeout(secs(30), c)
                .await
                .expect("a client did not stop")
                .unwrap();
        }
        per_cycle.push(acked_by.iter().map(|a| a.load(Ordering::Relaxed)).sum());
    }
    per_cycle
}

/// What the final checks found, for the summary line.
struct Verified {
    acked: usize,
    journalled: usize,
}

/// With at least `gw` running: waits until nothing is pending, then checks that every
/// acknowledged submission is journalled once and delivered, that Athena holds exactly one
/// record per idempotency key and only journalled ones, and that the audit chain verifies.
async fn verify_all_delivered_once(
    gw: &ProcessGateway,
    sim: &AthenaSim,
    ledger: &Ledger,
) -> Verified {
    let acked = ledger.acked.lock().unwrap().clone();
    let unexpected = ledger.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "answers other than 201: {unexpected:#?}"
    );
    let api = gw.api();
    nmpp_tests::eventually("every exchange to leave pending", secs(120), || async {
        let pending = api.exchanges("status=pending&limit=10").await;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("{} pending, e.g. {}", pending.len(), pending[0]))
        }
    })
    .await;

    let checked = nmpp_tests::check_acknowledged_delivered_once(gw, sim, &acked).await;
    Verified {
        acked: acked.len(),
        journalled: checked.journalled,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_acknowledged_submissions_survive_kill_9_and_are_delivered_exactly_once() {
    let started = Instant::now();
    let db = TestDb::create("crash").await;
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let mut nodes = [ProcessGateway::with_config(
        &sim.base_url(),
        on_postgres(&db.url),
    )];
    let cycles = cycles();
    let per_cycle = kill_loop(&mut nodes, &sim, &ledger, cycles).await;
    assert!(
        per_cycle.iter().all(|&n| n > 0),
        "a cycle without traffic: {per_cycle:?}"
    );

    nodes[0].start().await;
    let v = verify_all_delivered_once(&nodes[0], &sim, &ledger).await;
    let stats = sim.stats();
    assert!(
        stats.faults_served > 0,
        "no retries were exercised: {stats:?}"
    );
    nodes[0].kill().await;
    eprintln!(
        "crash test (postgres, 1 node): {cycles} kill -9 cycles, {} acknowledged, {} journalled, \
         {} Athena duplicates dropped, {} faults served, per cycle {per_cycle:?}, {:?}",
        v.acked,
        v.journalled,
        stats.duplicates,
        stats.faults_served,
        started.elapsed()
    );
}

/// Pending exchanges leased to the process `pid`, with their idempotency keys.
async fn leased_to(db: &tokio_postgres::Client, pid: u32) -> Vec<(String, String)> {
    db.query(
        "SELECT id::text, idempotency_key FROM exchanges
          WHERE status = 'pending' AND lease_owner LIKE $1 AND lease_until > now()",
        &[&format!("%-{pid}")],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_nodes_killed_alternately_lose_nothing_and_take_over_leases() {
    let started = Instant::now();
    let db = TestDb::create("crash2").await;
    let sql = db.client().await;
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let mut nodes = [
        ProcessGateway::with_config(&sim.base_url(), on_postgres(&db.url)),
        ProcessGateway::with_config(&sim.base_url(), on_postgres(&db.url)),
    ];
    let cycles = cycles();
    let per_cycle = kill_loop(&mut nodes, &sim, &ledger, cycles).await;
    assert!(
        per_cycle.iter().all(|&n| n > 0),
        "a cycle without traffic: {per_cycle:?}"
    );

    // Takeover: node 0 dies while Athena is still answering its deliveries (it has created the
    // records but is slow to say so). Node 1 must take those exchanges over once node 0's lease
    // expires and deliver them with the same idempotency key, which Athena recognises.
    for n in &mut nodes {
        if !n.is_running() {
            n.start().await;
        }
    }
    // Faults left over from the loop would put attempts of node 0 on the journal first.
    sim.clear_faults();
    let duplicates_before = sim.stats().duplicates;
    // Long enough that node 0 cannot receive Athena's answer and record the attempt between the
    // moment the record is seen at Athena and the kill below, however loaded the machine (with
    // 1 s this raced under a loaded CI run). Reset to zero as soon as node 0 is dead.
    sim.set_delay(Duration::from_secs(20));
    let api0 = nodes[0].api();
    for c in 0..16 {
        assert_eq!(
            submit_one(&api0, c, &ledger, "takeover").await,
            Ok(true),
            "{:?}",
            ledger.unexpected.lock().unwrap()
        );
    }
    let pid0 = nodes[0].pid().unwrap();
    let in_flight = nmpp_tests::eventually(
        "node 0 to hold a lease on a delivery Athena has received",
        secs(30),
        || async {
            let leased = leased_to(&sql, pid0).await;
            let sent: Vec<_> = leased
                .iter()
                .filter(|(_, key)| sim.record_by_key(key).is_some())
                .cloned()
                .collect();
            if sent.is_empty() {
                Err(format!(
                    "{} leased to node 0, none at Athena yet",
                    leased.len()
                ))
            } else {
                Ok(sent)
            }
        },
    )
    .await;
    nodes[0].kill().await;
    sim.set_delay(Duration::ZERO);
    let pid1 = nodes[1].pid().unwrap();
    let ids: Vec<String> = in_flight.iter().map(|(id, _)| id.clone()).collect();
    nmpp_tests::eventually("node 1 to deliver what node 0 held", secs(60), || async {
        let rows = sql
            .query(
                "SELECT id::text, status FROM exchanges WHERE id::text = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(|e| e.to_string())?;
        let left: Vec<String> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(1) != "delivered")
            .map(|r| r.get(0))
            .collect();
        if rows.len() == ids.len() && left.is_empty() {
            Ok(())
        } else {
            Err(format!("not yet delivered: {left:?}"))
        }
    })
    .await;
    for id in &ids {
        let attempts: Vec<(String, String)> = sql
            .query(
                "SELECT node, outcome FROM attempts WHERE exchange_id::text = $1 ORDER BY number",
                &[id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let last = attempts
            .last()
            .unwrap_or_else(|| panic!("{id}: no attempts"));
        assert!(
            last.0.ends_with(&format!("-{pid1}")),
            "{id} was delivered by node 1 (pid {pid1}), not node 0 (pid {pid0}): {attempts:?}"
        );
        assert!(
            !attempts
                .iter()
                .any(|(node, _)| node.ends_with(&format!("-{pid0}"))),
            "node 0 was killed before it could record an attempt on {id}: {attempts:?}"
        );
    }
    let duplicates = sim.stats().duplicates - duplicates_before;
    assert!(
        duplicates >= in_flight.len() as u64,
        "each taken-over delivery reached Athena again under the same key and was recognised: \
         {duplicates} duplicates for {} taken over",
        in_flight.len()
    );

    let v = verify_all_delivered_once(&nodes[1], &sim, &ledger).await;
    let stats = sim.stats();
    assert!(
        stats.faults_served > 0,
        "no retries were exercised: {stats:?}"
    );
    for n in &mut nodes {
        n.kill().await;
    }
    eprintln!(
        "crash test (postgres, 2 nodes): {cycles} kill -9 cycles, {} acknowledged, {} \
         journalled, {} taken over after node 0 died mid-delivery, {} Athena duplicates dropped, \
         {} faults served, per cycle {per_cycle:?}, {:?}",
        v.acked,
        v.journalled,
        in_flight.len(),
        stats.duplicates,
        stats.faults_served,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL stopped mid-load

const UP: u8 = 0;
const STOPPING: u8 = 1;
const DOWN: u8 = 2;
const STARTING: u8 = 3;

/// One answer to `POST /incidents` and the server's state when it was sent and answered.
#[derive(Debug)]
struct Answer {
    sid: String,
    sent_in: u8,
    answered_in: u8,
    status: u16,
    retry_after: String,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stopped_mid_load_answers_503_with_retry_after_then_recovers_by_itself() {
    if let Some(why) = PrivateCluster::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .unwrap(),
    );
    let sim = AthenaSim::start(AthenaSimOptions::default()).await.unwrap();
    let mut gw = ProcessGateway::with_config(&sim.base_url(), on_postgres(&cluster.url()));
    gw.start().await;
    let api = gw.api();

    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4_usize)
        .map(|c| {
            let (api, phase, stop, answers, failures) = (
                api.clone(),
                phase.clone(),
                stop.clone(),
                answers.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let doc = if c.is_multiple_of(2) {
                        sdm::online_crime_report()
                    } else {
                        sdm::skeleton()
                    };
                    let sid = sdm::submission_id(&doc);
                    let sent_in = phase.load(Ordering::SeqCst);
                    match api.submit(&doc).await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let retry_after = header(&res, "retry-after");
                            let body = res.text().await.unwrap_or_default();
                            let answered_in = phase.load(Ordering::SeqCst);
                            answers.lock().unwrap().push(Answer {
                                sid,
                                sent_in,
                                answered_in,
                                status,
                                retry_after,
                                body,
                            });
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    // Modest pace: the point is the answers, not the throughput.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    for round in 0..2 {
        // Up: submissions are acknowledged.
        let before = answers.lock().unwrap().len();
        nmpp_tests::eventually("201s while PostgreSQL is up", secs(60), || async {
            let n = answers.lock().unwrap()[before..]
                .iter()
                .filter(|a| a.status == 201 && a.sent_in == UP)
                .count();
            if n >= 20 {
                Ok(())
            } else {
                Err(format!("{n} so far"))
            }
        })
        .await;

        // PostgreSQL stops as a crash would.
        phase.store(STOPPING, Ordering::SeqCst);
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop_immediate())
            .await
            .unwrap();
        phase.store(DOWN, Ordering::SeqCst);
        let down_from = answers.lock().unwrap().len();
        nmpp_tests::eventually("503s while PostgreSQL is down", secs(60), || async {
            let n = answers.lock().unwrap()[down_from..]
                .iter()
                .filter(|a| a.sent_in == DOWN && a.answered_in == DOWN)
                .count();
            if n >= 20 {
                Ok(())
            } else {
                Err(format!("{n} answered so far"))
            }
        })
        .await;
        let ready = gw
            .api()
            .http
            .get(gw.api().url("/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503, "readiness while PostgreSQL is down");

        // Back: the gateway recovers by itself.
        phase.store(STARTING, Ordering::SeqCst);
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.start_server())
            .await
            .unwrap();
        phase.store(UP, Ordering::SeqCst);
        let up_from = answers.lock().unwrap().len();
        nmpp_tests::eventually(
            &format!("201s again after PostgreSQL is back (round {round})"),
            secs(60),
            || async {
                let n = answers.lock().unwrap()[up_from..]
                    .iter()
                    .filter(|a| a.status == 201 && a.sent_in == UP)
                    .count();
                if n >= 20 {
                    Ok(())
                } else {
                    Err(format!("{n} so far"))
                }
            },
        )
        .await;
        let ready = gw
            .api()
            .http
            .get(gw.api().url("/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "readiness once PostgreSQL is back");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(secs(60), c)
            .await
            .expect("a client did not stop")
            .unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "requests without an answer: {failures:?}"
    );
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let mut refused_while_down = HashSet::new();
    for a in &answers {
        match a.status {
            201 => assert!(
                !(a.sent_in == DOWN && a.answered_in == DOWN),
                "201 while PostgreSQL was down: {a:?}"
            ),
            503 => {
                assert!(
                    a.retry_after.parse::<u64>().is_ok_and(|s| s > 0),
                    "503 without a Retry-After in seconds: {a:?}"
                );
                let doc: Value = serde_json::from_str(&a.body)
                    .unwrap_or_else(|e| panic!("503 body is not JSON ({e}): {a:?}"));
                assert_eq!(doc["errors"][0]["status"], "503", "{a:?}");
                assert_eq!(doc["errors"][0]["meta"]["errorType"], "system", "{a:?}");
                if a.sent_in == DOWN && a.answered_in == DOWN {
                    refused_while_down.insert(a.sid.clone());
                }
            }
            other => panic!("answered {other}, neither 201 nor 503: {a:?}"),
        }
    }
    let acked: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.sid.clone())
        .collect();
    let n503 = count_of(&answers, |a| a.status == 503);
    let by_phase: Vec<usize> = [UP, STOPPING, DOWN, STARTING]
        .iter()
        .map(|&p| count_of(&answers, |a| a.status == 503 && a.sent_in == p))
        .collect();

    // Everything acknowledged is journalled and delivered once; nothing refused while the
    // server was down was stored.
    let ledger = Ledger::default();
    for sid in &acked {
        ledger.ack(sid.clone(), String::new());
    }
    let v = verify_all_delivered_once(&gw, &sim, &ledger).await;
    let rows = gw.cli(&["exchanges", "list", "--json"]).await.json();
    let stored: HashSet<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["submissionId"].as_str())
        .collect();
    let stored_refused: Vec<_> = refused_while_down
        .iter()
        .filter(|s| stored.contains(s.as_str()))
        .collect();
    assert!(
        stored_refused.is_empty(),
        "refused with 503 while down, yet stored: {stored_refused:?}"
    );
    gw.kill().await;
    eprintln!(
        "pg outage test: 2 stops of PostgreSQL mid-load, {} answers, {} acknowledged ({} \
         journalled), {n503} answered 503 + Retry-After ({} while fully down; sent while up, \
         stopping, down, starting: {by_phase:?}), 0 answered 201 while down, {:?}",
        answers.len(),
        v.acked,
        v.journalled,
        refused_while_down.len(),
        started.elapsed()
    );
}

fn count_of(answers: &[Answer], pred: impl Fn(&Answer) -> bool) -> usize {
    answers.iter().filter(|a| pred(a)).count()
}
