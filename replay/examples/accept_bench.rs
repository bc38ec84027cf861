//! Durable accepts/s at the journal API, SQLite beside PostgreSQL in one run (issue 3).
//!
//! C concurrent callers (the gateway's request handlers) each call [`Journal::accept`] in a loop
//! for S seconds with the 5.3 KB SDM document of `ops/bench/incident-5kb.json` and a unique
//! submission id; every `Ok` is a durable commit (SQLite `synchronous=FULL`, PostgreSQL
//! `synchronous_commit=on`). Runs: SQLite; PostgreSQL with one handle (one gateway node);
//! PostgreSQL with two handles on the same database (two nodes), then verifies the PostgreSQL
//! audit chain end to end.
//!
//! ```sh
//! cargo run --release -p replay --example accept_bench -- [SECONDS=10] [CALLERS=64] [PG_ADMIN_URL]
//! ```

use replay::{AuditEvent, Direction, Journal, NewExchange, OpenOptions, audit::ChainVerifier};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let callers: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let admin = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let body = Arc::new(std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/bench/incident-5kb.json"),
    )?);
    println!(
        "# {} cores; {secs}s per run; {callers} callers; body {} bytes",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        body.len()
    );

    let dir = tempfile::tempdir()?;
    let sq = replay::open(
        &format!("sqlite://{}", dir.path().join("j.db").display()),
        OpenOptions {
            server: true,
            ..Default::default()
        },
    )
    .await?;
    let r = run(&[sq], secs, callers, &body).await;
    println!("sqlite:          {r:.0} accepts/s");

    let db = format!("nmpp_accept_bench_{}", std::process::id());
    let (admin_c, conn) = tokio_postgres::connect(&admin, NoTls).await?;
    tokio::spawn(conn);
    admin_c
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap_or(admin.len())]);
    let opts = OpenOptions {
        server: true,
        ..Default::default()
    };
    let pg1 = replay::open(&url, opts.clone()).await?;
    let r = run(std::slice::from_ref(&pg1), secs, callers, &body).await;
    println!("postgres 1 node: {r:.0} accepts/s");
    let pg2 = replay::open(&url, opts).await?;
    let r = run(&[pg1.clone(), pg2], secs, callers, &body).await;
    println!("postgres 2 nodes: {r:.0} accepts/s (callers split between two journal handles)");
    let mut v = ChainVerifier::default();
    let mut from = 1;
    loop {
        let page = pg1.audit_records(from, 10_000).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for rec in &page {
            v.check(rec)
                .map_err(|f| format!("chain broken at {}: {}", f.seq, f.reason))?;
        }
    }
    println!("postgres audit chain: {} records, intact", v.checked());
    drop(pg1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin_c
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await?;
    Ok(())
}

async fn run(journals: &[Arc<dyn Journal>], secs: u64, callers: usize, body: &Arc<Vec<u8>>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..callers {
        let j = journals[c % journals.len()].clone();
        let (stop, done, failed, body) = (stop.clone(), done.clone(), failed.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = Uuid::new_v4().to_string();
                let e = NewExchange {
                    id: Uuid::now_v7(),
                    force: "bench".into(),
                    kind: "incident.submitted".into(),
                    direction: Direction::Inbound,
                    source_system: "ihub".into(),
                    target_system: "athena".into(),
                    api_version: "ihub-sapi/v1".into(),
                    model_version: "nmpp/1".into(),
                    idempotency_key: key.clone(),
                    correlation_id: key,
                    case_ref: None,
                    payload_type: "application/vnd.api+json".into(),
                    payload: body.to_vec(),
                    response: vec![b'r'; 400],
                };
                let ev = AuditEvent {
                    time: OffsetDateTime::now_utc(),
                    actor: "bench".into(),
                    role: "ihub".into(),
                    force: Some("bench".into()),
                    action: "incident.create".into(),
                    object_type: Some("exchange".into()),
                    object_id: Some(e.id.to_string()),
                    result: "success".into(),
                    source_ip: Some("127.0.0.1".into()),
                    user_agent: None,
                    correlation_id: None,
                    event_uid: Uuid::now_v7(),
                    detail: Some(serde_json::json!({ "status": 201 })),
                };
                match j.accept(e, ev).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Warm up for a second, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = done.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let n = done.load(Ordering::Relaxed) - start;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let f = failed.load(Ordering::Relaxed);
    if f > 0 {
        println!("  ({f} accepts failed)");
    }
    rate
}
