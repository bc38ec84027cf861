//! Search latency at scale, PostgreSQL beside SQLite (issue 3: "a search over 10 million
//! journalled exchanges answers in ≤ 100 ms").
//!
//! Loads N synthetic exchanges (default 10,000,000) spread over three years into a fresh
//! PostgreSQL database (one `INSERT … SELECT FROM generate_series` per million rows, indexes
//! built after the load, then `VACUUM ANALYZE`) and into a SQLite file (a recursive CTE, same
//! distribution), then times representative operator searches through the [`Journal`] API —
//! `list` (first page of 50, newest first), a second page by cursor, and `count` — on both.
//!
//! ```sh
//! cargo run --release -p replay --example search_bench -- [ROWS] [SQLITE_PATH] [PG_ADMIN_URL]
//! ```
//! `ops/bench/search.sh` runs it with the defaults and keeps the output.

use replay::{ExchangeFilter, Journal, OpenOptions};
use std::{sync::Arc, time::Instant};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

/// Three years, ending now.
const SPAN_MS: i64 = 3 * 365 * 86_400_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: i64 = args.get(1).map_or(Ok(10_000_000), |s| s.parse())?;
    let sqlite_path = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "target/bench/search.db".into());
    let admin = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let end_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000 - 86_400_000;
    let start_ms = end_ms - SPAN_MS;
    println!("# {rows} exchanges from {start_ms} to {end_ms} (epoch ms)");

    // SKIP_LOAD=1 times the searches on the data a previous run loaded.
    let load = std::env::var("SKIP_LOAD").is_err();
    // ---- PostgreSQL ----
    let db = "nmpp_search_bench";
    let pg_url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap_or(admin.len())]);
    if load {
        load_pg(&admin, db, &pg_url, rows, start_ms).await?;
        load_sqlite(&sqlite_path, rows, start_ms).await?;
    }
    let pg: Arc<dyn Journal> =
        Arc::new(replay::postgres::PgJournal::open(&pg_url, OpenOptions::default()).await?);
    let sq = replay::open(&format!("sqlite://{sqlite_path}"), OpenOptions::default()).await?;
    searches(pg, sq, rows, end_ms).await
}

async fn load_pg(
    admin: &str,
    db: &str,
    pg_url: &str,
    rows: i64,
    start_ms: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let (admin_c, conn) = tokio_postgres::connect(admin, NoTls).await?;
    tokio::spawn(conn);
    admin_c
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await?;
    admin_c
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let t = Instant::now();
    let pg = replay::postgres::PgJournal::open(pg_url, OpenOptions::default()).await?;
    let from = OffsetDateTime::from_unix_timestamp(start_ms / 1000)?;
    pg.ensure_partitions(from, OffsetDateTime::now_utc())
        .await?;
    let (c, conn) = tokio_postgres::connect(pg_url, NoTls).await?;
    tokio::spawn(conn);
    let defs: Vec<String> = c
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'exchanges' AND indexname <> 'exchanges_pkey'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let names: Vec<String> = c
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'exchanges' AND indexname <> 'exchanges_pkey'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for n in &names {
        c.batch_execute(&format!("DROP INDEX {n}")).await?;
    }
    let chunk = 1_000_000i64;
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + chunk - 1).min(rows);
        c.execute(
            &format!(
                "INSERT INTO exchanges (id, seq, root_id, force, kind, direction, source_system,
                     target_system, api_version, model_version, idempotency_key, correlation_id,
                     case_ref, status, attempts, next_attempt_at, created_at, updated_at,
                     last_error_class, payload_type, payload, response)
                 SELECT g.id, g.i, g.id, 'force' || (g.h % 43), k.kinds[1 + (g.h / 43) % 5],
                     'inbound', 'ihub', k.targets[1 + (g.h / 215) % 4], 'ihub-sapi/v1', 'nmpp/1',
                     'sub-' || g.i, 'corr-' || g.i, 'CRN-' || (g.i / 5),
                     CASE WHEN g.h % 1000 < 10 THEN 'parked' WHEN g.h % 1000 < 15 THEN 'pending'
                          ELSE 'delivered' END,
                     1, CASE WHEN g.h % 1000 BETWEEN 10 AND 14 THEN g.t END, g.t, g.t,
                     CASE WHEN g.h % 1000 < 10 THEN k.classes[1 + g.h % 3]
                          WHEN g.h % 1000 < 60 THEN 'timeout' END,
                     'application/json', k.payload, k.payload
                 FROM (SELECT i, h, to_timestamp(ms / 1000.0) AS t,
                         (lpad(to_hex(ms), 12, '0') || '7' || lpad(to_hex(h % 4096), 3, '0')
                          || '8' || lpad(to_hex(i % 281474976710656), 15, '0'))::uuid AS id
                       FROM (SELECT i, (i * 2654435761) % 4294967296 AS h,
                                    {start_ms} + (i * {SPAN_MS}) / {rows} AS ms
                             FROM generate_series({lo}::bigint, {hi}::bigint) AS i) s) g,
                      (SELECT ARRAY['incident.submitted', 'message.received', 'case.updated',
                                    'evidence.uploaded', 'notification.sent'] AS kinds,
                              ARRAY['athena', 'storm', 'dams', 'ihub'] AS targets,
                              ARRAY['rejected', 'upstream_5xx', 'mapping'] AS classes,
                              convert_to(repeat('{{\"x\":1}}', 25), 'UTF8') AS payload) k"
            ),
            &[],
        )
        .await?;
        println!(
            "postgres: loaded {hi} rows ({:.0}s)",
            t.elapsed().as_secs_f64()
        );
        lo = hi + 1;
    }
    c.batch_execute(&format!("SELECT setval('exchanges_seq', {rows})"))
        .await?;
    for d in &defs {
        let ti = Instant::now();
        c.batch_execute(&d.replace(" ON ONLY ", " ON ")).await?;
        println!("postgres: {d} ({:.0}s)", ti.elapsed().as_secs_f64());
    }
    c.batch_execute(
        "INSERT INTO exchange_counts SELECT force, kind, status, count(*) FROM exchanges GROUP BY 1, 2, 3",
    )
    .await?;
    c.batch_execute("VACUUM ANALYZE exchanges").await?;
    println!(
        "postgres: loaded and indexed in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn load_sqlite(
    sqlite_path: &str,
    rows: i64,
    start_ms: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let chunk = 1_000_000i64;
    let t = Instant::now();
    let _ = std::fs::remove_file(sqlite_path);
    if let Some(dir) = std::path::Path::new(&sqlite_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    drop(replay::open(&format!("sqlite://{sqlite_path}"), OpenOptions::default()).await?);
    {
        let s = rusqlite::Connection::open(sqlite_path)?;
        let idx: Vec<(String, String)> = {
            let mut st = s.prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'exchanges'
                 AND sql IS NOT NULL",
            )?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (n, _) in &idx {
            s.execute_batch(&format!("DROP INDEX {n}"))?;
        }
        s.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;")?;
        let mut lo = 1;
        while lo <= rows {
            let hi = (lo + chunk - 1).min(rows);
            s.execute_batch(&format!(
                "WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i < {hi}),
                 g AS (SELECT i, (i * 2654435761) % 4294967296 AS h,
                              {start_ms} + (i * {SPAN_MS}) / {rows} AS ms FROM s)
                 INSERT INTO exchanges (seq, id, root_id, force, kind, direction, source_system,
                     target_system, api_version, model_version, idempotency_key, correlation_id,
                     case_ref, status, attempts, next_attempt_ms, created_at, created_ms,
                     updated_ms, last_error_class, payload_type, payload, response)
                 SELECT i, printf('%08x-%04x-7%03x-8%03x-%012x', ms >> 16, ms & 65535, h % 4096,
                                  (h / 4096) % 4096, i),
                     printf('%08x-%04x-7%03x-8%03x-%012x', ms >> 16, ms & 65535, h % 4096,
                                  (h / 4096) % 4096, i),
                     'force' || (h % 43),
                     CASE (h / 43) % 5 WHEN 0 THEN 'incident.submitted' WHEN 1 THEN 'message.received'
                          WHEN 2 THEN 'case.updated' WHEN 3 THEN 'evidence.uploaded'
                          ELSE 'notification.sent' END,
                     'inbound', 'ihub',
                     CASE (h / 215) % 4 WHEN 0 THEN 'athena' WHEN 1 THEN 'storm' WHEN 2 THEN 'dams'
                          ELSE 'ihub' END,
                     'ihub-sapi/v1', 'nmpp/1', 'sub-' || i, 'corr-' || i, 'CRN-' || (i / 5),
                     CASE WHEN h % 1000 < 10 THEN 'parked' WHEN h % 1000 < 15 THEN 'pending'
                          ELSE 'delivered' END,
                     1, CASE WHEN h % 1000 BETWEEN 10 AND 14 THEN ms END,
                     strftime('%Y-%m-%dT%H:%M:%fZ', ms / 1000.0, 'unixepoch'), ms, ms,
                     CASE WHEN h % 1000 < 10 THEN
                               CASE h % 3 WHEN 0 THEN 'rejected' WHEN 1 THEN 'upstream_5xx'
                                    ELSE 'mapping' END
                          WHEN h % 1000 < 60 THEN 'timeout' END,
                     'application/json', CAST(replace(printf('%.25c', '*'), '*', '{{\"x\":1}}') AS BLOB),
                     CAST(replace(printf('%.25c', '*'), '*', '{{\"x\":1}}') AS BLOB)
                 FROM g"
            ))?;
            println!(
                "sqlite: loaded {hi} rows ({:.0}s)",
                t.elapsed().as_secs_f64()
            );
            lo = hi + 1;
        }
        for (n, sql) in &idx {
            let ti = Instant::now();
            s.execute_batch(sql)?;
            println!("sqlite: {n} ({:.0}s)", ti.elapsed().as_secs_f64());
        }
        s.execute_batch(
            "DELETE FROM exchange_counts;
             INSERT INTO exchange_counts SELECT force, kind, status, count(*) FROM exchanges
                 GROUP BY 1, 2, 3;
             ANALYZE;",
        )?;
    }
    println!(
        "sqlite: loaded and indexed in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn searches(
    pg: Arc<dyn Journal>,
    sq: Arc<dyn Journal>,
    rows: i64,
    end_ms: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    let year_ago = end_ms - 365 * 86_400_000;
    let mid = rows / 2;
    let searches: Vec<(&str, ExchangeFilter)> = vec![
        ("everything (newest 50)", ExchangeFilter::default()),
        ("status=parked", f(&[("status", "parked")])),
        ("force=force7", f(&[("force", "force7")])),
        (
            "force=force7 status=parked",
            f(&[("force", "force7"), ("status", "parked")]),
        ),
        (
            "force kind from/to (one week, a year ago)",
            ExchangeFilter {
                force: Some("force7".into()),
                kind: Some("incident.submitted".into()),
                from: Some(t(year_ago)),
                to: Some(t(year_ago + 7 * 86_400_000)),
                ..Default::default()
            },
        ),
        (
            "target=storm, one day",
            ExchangeFilter {
                target: Some("storm".into()),
                from: Some(t(year_ago)),
                to: Some(t(year_ago + 86_400_000)),
                ..Default::default()
            },
        ),
        (
            "error_class=timeout force=force12",
            f(&[("error_class", "timeout"), ("force", "force12")]),
        ),
        ("case_ref", f(&[("case_ref", &format!("CRN-{}", mid / 5))])),
        (
            "submission_id",
            f(&[("submission_id", &format!("sub-{mid}"))]),
        ),
        (
            "correlation_id",
            f(&[("correlation_id", &format!("corr-{mid}"))]),
        ),
        (
            "status=pending kind=case.updated",
            f(&[("status", "pending"), ("kind", "case.updated")]),
        ),
    ];
    println!(
        "\n| search | rows | PG page 1 | PG page 2 | PG count | SQLite page 1 | SQLite page 2 | SQLite count | count |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, filter) in &searches {
        let (p1, p2, cnt, n, got) = time_search(pg.as_ref(), filter).await?;
        let (s1, s2, scnt, sn, sgot) = time_search(sq.as_ref(), filter).await?;
        assert_eq!(n, sn, "{name}: both backends count the same");
        println!(
            "| {name} | {got}/{sgot} | {p1:.1} ms | {p2:.1} ms | {cnt:.1} ms | {s1:.1} ms | {s2:.1} ms | {scnt:.1} ms | {n} |"
        );
    }
    Ok(())
}

fn f(pairs: &[(&str, &str)]) -> ExchangeFilter {
    let mut f = ExchangeFilter::default();
    for (k, v) in pairs {
        f.set(k, v).expect("a valid filter");
    }
    f
}

/// Median of 5 runs (after one warm-up) of: first page, second page, count. Milliseconds.
async fn time_search(
    j: &dyn Journal,
    filter: &ExchangeFilter,
) -> Result<(f64, f64, f64, u64, usize), replay::JournalError> {
    let mut p1 = Vec::new();
    let mut p2 = Vec::new();
    let mut cnt = Vec::new();
    let mut n = 0;
    let mut got = 0;
    for run in 0..6 {
        let t = Instant::now();
        let page = j.list(filter, None, 50).await?;
        let a = t.elapsed().as_secs_f64() * 1000.0;
        got = page.items.len();
        let t = Instant::now();
        if let Some(c) = page.next {
            j.list(filter, Some(c), 50).await?;
        }
        let b = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        n = j.count(filter).await?;
        let c = t.elapsed().as_secs_f64() * 1000.0;
        if run > 0 {
            p1.push(a);
            p2.push(b);
            cnt.push(c);
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((med(p1), med(p2), med(cnt), n, got))
}
