use super::*;
use crate::{
    AttemptOutcome, Direction, NewExchange, Status, audit::ChainVerifier, model::AuditEvent,
};

fn exchange(key: &str) -> NewExchange {
    NewExchange {
        id: Uuid::now_v7(),
        force: "demo".into(),
        kind: "incident.submitted".into(),
        direction: Direction::Inbound,
        source_system: "ihub".into(),
        target_system: "athena".into(),
        api_version: "ihub-sapi/v1".into(),
        model_version: "nmpp/1".into(),
        idempotency_key: key.into(),
        correlation_id: "corr-1".into(),
        case_ref: Some("TYA-1".into()),
        payload_type: "application/json".into(),
        payload: format!("{{\"k\":\"{key}\"}}").into_bytes(),
        response: b"{\"ok\":true}".to_vec(),
    }
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        time: OffsetDateTime::now_utc(),
        actor: "tester".into(),
        role: "ihub".into(),
        force: Some("demo".into()),
        action: action.into(),
        object_type: Some("exchange".into()),
        object_id: None,
        result: "success".into(),
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        correlation_id: None,
        event_uid: Uuid::now_v7(),
        detail: None,
    }
}

async fn journal(dir: &tempfile::TempDir) -> SqliteJournal {
    SqliteJournal::open(
        &dir.path().join("j.db"),
        OpenOptions {
            server: true,
            ..Default::default()
        },
    )
    .await
    .expect("open journal")
}

fn attempt(n: u32, outcome: AttemptOutcome, class: Option<&str>) -> Attempt {
    let now = OffsetDateTime::now_utc();
    Attempt {
        number: n,
        started_at: now,
        finished_at: now,
        outcome,
        error_class: class.map(Into::into),
        detail: None,
        http_status: None,
        node: "n1".into(),
    }
}

#[tokio::test]
async fn accept_is_idempotent_per_force_kind_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir).await;
    let first = exchange("s-1");
    let first_id = first.id;
    assert_eq!(
        j.accept(first, event("incident.create")).await.unwrap(),
        AcceptOutcome::Created
    );
    let again = j
        .accept(exchange("s-1"), event("incident.create"))
        .await
        .unwrap();
    match again {
        AcceptOutcome::Duplicate {
            id,
            response,
            payload_differs,
        } => {
            assert_eq!(id, first_id);
            assert_eq!(response, b"{\"ok\":true}");
            assert!(!payload_differs);
        }
        other => panic!("expected duplicate, got {other:?}"),
    }
    let mut other_force = exchange("s-1");
    other_force.force = "kent".into();
    assert_eq!(
        j.accept(other_force, event("incident.create"))
            .await
            .unwrap(),
        AcceptOutcome::Created
    );
    let page = j.list(&ExchangeFilter::default(), None, 100).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let audit = j.audit_records(1, 100).await.unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[1].event.result, "duplicate");
    assert_eq!(
        audit[1].event.object_id.as_deref(),
        Some(first_id.to_string().as_str())
    );
}

#[tokio::test]
async fn concurrent_accepts_share_commits_and_all_persist() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(journal(&dir).await);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            j.accept(exchange(&format!("k-{i}")), event("incident.create"))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), AcceptOutcome::Created);
    }
    let stats = j.stats().await.unwrap();
    assert_eq!(stats.pending, 500);
    assert_eq!(stats.audit_records, 500);
    // Reopen from disk: everything acknowledged is there.
    drop(j);
    let j = journal(&dir).await;
    assert_eq!(j.stats().await.unwrap().pending, 500);
}

#[tokio::test]
async fn claim_attempt_park_and_replay_keep_history() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir).await;
    let e = exchange("s-2");
    let id = e.id;
    j.accept(e, event("incident.create")).await.unwrap();

    let now = OffsetDateTime::now_utc();
    let work = j
        .claim_due("n1", now, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].id, id);
    // Leased: a second claim gets nothing.
    assert!(
        j.claim_due("n2", now, Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let retry_at = now + time::Duration::seconds(60);
    j.record_attempt(
        id,
        attempt(1, AttemptOutcome::Retry, Some("upstream_5xx")),
        Transition::RetryAt(retry_at),
        Prepared::default(),
    )
    .await
    .unwrap();
    // Not due yet.
    assert!(
        j.claim_due("n1", now, Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = retry_at + time::Duration::seconds(1);
    assert_eq!(
        j.claim_due("n1", later, Duration::from_secs(30), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    j.record_attempt(
        id,
        attempt(2, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();

    let d = j.get(id).await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Parked);
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.summary.last_error_class.as_deref(), Some("rejected"));

    let child = j.replay(id, event("exchange.replay")).await.unwrap();
    // A second replay while the child is live is refused.
    assert!(matches!(
        j.replay(id, event("exchange.replay")).await,
        Err(JournalError::Conflict(_))
    ));
    let parent = j.get(id).await.unwrap().unwrap();
    assert_eq!(
        parent.summary.status,
        Status::Parked,
        "the parent's history is not overwritten"
    );
    assert_eq!(parent.children, vec![child]);
    let c = j.get(child).await.unwrap().unwrap();
    assert_eq!(c.summary.parent_id, Some(id));
    assert_eq!(c.idempotency_key, "s-2");
    assert_eq!(c.summary.status, Status::Pending);

    let work = j
        .claim_due("n1", later, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].id, child);
    j.record_attempt(
        child,
        attempt(1, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "42/00001/26".into(),
        },
        Prepared {
            canonical: Some(b"{}".to_vec()),
            target_payload: Some(b"<x/>".to_vec()),
            mapping_version: Some("m@1".into()),
        },
    )
    .await
    .unwrap();
    let c = j.get(child).await.unwrap().unwrap();
    assert_eq!(c.summary.status, Status::Delivered);
    assert_eq!(c.summary.target_ref.as_deref(), Some("42/00001/26"));
    let p = j.payloads(child).await.unwrap().unwrap();
    assert_eq!(p.target_payload.as_deref(), Some(&b"<x/>"[..]));

    // Replaying a delivered exchange is refused.
    assert!(matches!(
        j.replay(child, event("exchange.replay")).await,
        Err(JournalError::Conflict(_))
    ));
    assert!(matches!(
        j.replay(Uuid::now_v7(), event("exchange.replay")).await,
        Err(JournalError::NotFound(_))
    ));
}

#[tokio::test]
async fn audit_chain_verifies_and_detects_an_edited_row() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir).await;
    for i in 0..5 {
        j.accept(exchange(&format!("a-{i}")), event("incident.create"))
            .await
            .unwrap();
    }
    let mut v = ChainVerifier::default();
    for r in j.audit_records(1, 100).await.unwrap() {
        v.check(&r).unwrap();
    }
    assert_eq!(v.checked(), 5);

    let c = Connection::open(dir.path().join("j.db")).unwrap();
    c.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let mut v = ChainVerifier::default();
    let fault = j
        .audit_records(1, 100)
        .await
        .unwrap()
        .iter()
        .find_map(|r| v.check(r).err())
        .expect("tampering must be detected");
    assert_eq!(fault.seq, 3);
    assert!(fault.reason.contains("edited"), "{}", fault.reason);

    c.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let mut v = ChainVerifier::default();
    let fault = j
        .audit_records(1, 100)
        .await
        .unwrap()
        .iter()
        .find_map(|r| v.check(r).err())
        .unwrap();
    assert_eq!(fault.seq, 2);
    assert!(fault.reason.contains("missing"), "{}", fault.reason);
}

#[tokio::test]
async fn a_full_journal_refuses_instead_of_acknowledging() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(
        &dir.path().join("j.db"),
        OpenOptions {
            server: true,
            max_size_bytes: Some(256 * 1024),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut refused = None;
    for i in 0..1000 {
        let mut e = exchange(&format!("big-{i}"));
        e.payload = vec![b'x'; 8 * 1024];
        match j.accept(e, event("incident.create")).await {
            Ok(_) => {}
            Err(err) => {
                refused = Some((i, err));
                break;
            }
        }
    }
    let (i, err) = refused.expect("a 256 KiB journal cannot hold 8 MB");
    assert!(matches!(err, JournalError::Unavailable(_)), "{err:?}");
    // Everything acknowledged before the refusal is there; the refused one is not.
    let stats = j.stats().await.unwrap();
    assert_eq!(stats.pending, i as u64);
    // The journal still answers reads and small writes (audit) after the refusal.
    j.ping().await.unwrap();
}

/// At its size limit the journal keeps exactly what it acknowledged, whatever else shares the
/// refused writes' batches. SQLite may answer SQLITE_FULL by rolling back the whole batch
/// transaction (not just the statement); a write queued after that in the same batch must not
/// then run outside any transaction, be committed on its own, and be answered 503 all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_size_limit_the_journal_keeps_exactly_what_it_acknowledged() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Arc::new(
            SqliteJournal::open(
                &path,
                OpenOptions {
                    server: true,
                    max_size_bytes: Some(256 * 1024),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Delivery workers claiming beside the submissions, as in the server.
        let mut claimers = Vec::new();
        for n in 0..2 {
            let (j, stop) = (j.clone(), stop.clone());
            claimers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = j
                        .claim_due(
                            &format!("n{n}"),
                            OffsetDateTime::now_utc(),
                            Duration::from_secs(60),
                            8,
                        )
                        .await;
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut tasks = Vec::new();
        for i in 0..400usize {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("r{round}-{i}");
                let mut e = exchange(&key);
                e.payload = vec![b'x'; 512 + (i * 977) % (12 * 1024)];
                (key, j.accept(e, event("incident.create")).await)
            }));
        }
        let mut acked = std::collections::BTreeSet::new();
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                (key, Ok(_)) => {
                    acked.insert(key);
                }
                (_, Err(e)) => {
                    assert!(matches!(e, JournalError::Unavailable(_)), "{e:?}");
                    refused += 1;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in claimers {
            c.await.unwrap();
        }
        assert!(refused > 0, "a 256 KiB journal cannot hold 2 MB");
        let stored: std::collections::BTreeSet<String> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT idempotency_key FROM exchanges")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            stored.difference(&acked).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "round {round}: stored but answered with an error"
        );
        assert_eq!(
            acked.difference(&stored).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "round {round}: acknowledged but not stored"
        );
        // The maintained counts agree, and the chain verifies: nothing of a refused batch was
        // committed piecemeal.
        assert_eq!(j.stats().await.unwrap().pending as usize, stored.len());
        verify_chain(&j).await;
    }
}

#[tokio::test]
async fn a_journal_from_before_migration_2_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let parent = Uuid::now_v7();
    let child = Uuid::now_v7();
    {
        // The schema and data of the walking skeleton (migration 1 only, no auto-vacuum).
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        c.execute_batch(MIGRATIONS[0].2).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TEXT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 'init', '2026-11-01T00:00:00Z');",
        )
        .unwrap();
        for (id, parent_id, status, dedupe) in [
            (parent, None, "parked", Some("demo|incident.submitted|k")),
            (child, Some(parent), "pending", None),
        ] {
            c.execute(
                "INSERT INTO exchanges (id, force, kind, direction, source_system, target_system,
                     api_version, model_version, idempotency_key, dedupe_key, correlation_id,
                     parent_id, status, created_at, created_ms, updated_ms, payload_type, payload,
                     response)
                 VALUES (?1, 'demo', 'incident.submitted', 'inbound', 'ihub', 'athena', 'v1',
                     'nmpp/1', 'k', ?2, 'c', ?3, ?4, '2026-11-01T00:00:00Z', 1, 1,
                     'application/json', x'7b7d', x'7b7d')",
                rusqlite::params![
                    id.to_string(),
                    dedupe,
                    parent_id.map(|p: Uuid| p.to_string()),
                    status
                ],
            )
            .unwrap();
        }
        let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(av, 0);
    }
    let j = journal_at(&path).await;
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.parked), (1, 1));
    let c = Connection::open(&path).unwrap();
    let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(av, 2, "converted to incremental auto-vacuum");
    let root: String = c
        .query_row(
            "SELECT root_id FROM exchanges WHERE id = ?1",
            [child.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(root, parent.to_string());
    let f = ExchangeFilter {
        parent: Some(parent),
        ..Default::default()
    };
    assert_eq!(j.count(&f).await.unwrap(), 1);
    // Migration 32 edited the stored definition of `exchanges` in place: the file is sound and
    // the status rule still holds, for rows old and new.
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let err = c
        .execute(
            "UPDATE exchanges SET status = 'lost' WHERE id = ?1",
            [child.to_string()],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
    c.execute(
        "UPDATE exchanges SET status = 'parked' WHERE id = ?1",
        [child.to_string()],
    )
    .unwrap();
}

/// Whether SQLite builds a temporary index to check a one-row status update on `c`.
fn status_update_uses_a_temporary_index(c: &Connection) -> bool {
    let mut stmt = c
        .prepare("EXPLAIN UPDATE exchanges SET status = 'parked' WHERE seq = 1")
        .unwrap();
    let opcodes: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    opcodes.iter().any(|op| op == "OpenEphemeral")
}

/// Migration 32 takes the status constraint's temporary index away (the reason for it), on
/// the connection that ran it — the journal writer's — as well as on any other.
#[test]
fn the_status_rule_is_checked_without_a_temporary_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let c = Connection::open(&path).unwrap();
    // The premise: the constraint as migration 1 wrote it builds one.
    c.execute_batch(MIGRATIONS[0].2).unwrap();
    assert!(status_update_uses_a_temporary_index(&c));
    drop(c);
    std::fs::remove_file(&path).unwrap();
    let mut c = Connection::open(&path).unwrap();
    migrate(&mut c).unwrap();
    assert!(
        !status_update_uses_a_temporary_index(&c),
        "the migrating connection"
    );
    let other = Connection::open(&path).unwrap();
    assert!(
        !status_update_uses_a_temporary_index(&other),
        "another connection"
    );
    let sql: String = other
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'exchanges'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        sql.contains("CHECK (status = 'pending' OR status = 'delivered' OR status = 'parked')"),
        "{sql}"
    );
}

async fn journal_at(path: &std::path::Path) -> SqliteJournal {
    SqliteJournal::open(
        path,
        OpenOptions {
            server: true,
            ..Default::default()
        },
    )
    .await
    .expect("open journal")
}

/// The claim walks the due-time index and stops at its limit. With 20,000 exchanges pending
/// (a bulk replay's children), a plan that scans every pending exchange and sorts them on each
/// claim made claiming the bottleneck of delivery.
#[tokio::test]
async fn the_claim_walks_the_due_index_without_sorting_every_pending_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = journal_at(&path).await;
    // Some pending work, so the plan is the one a live journal gets.
    for i in 0..50 {
        j.accept(exchange(&format!("plan-{i}")), event("incident.create"))
            .await
            .unwrap();
    }
    let c = Connection::open(&path).unwrap();
    let plan: Vec<String> = c
        .prepare(&format!("EXPLAIN QUERY PLAN {}", write::CLAIM_SQL))
        .unwrap()
        .query_map(
            rusqlite::params!["n1", 2_i64, 1_i64, 10_i64, "[]", "[]"],
            |r| r.get::<_, String>(3),
        )
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("USING INDEX exchanges_due")),
        "{plan:#?}"
    );
    assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:#?}");
    // And it still claims oldest due first.
    let got = j
        .claim_due("n1", OffsetDateTime::now_utc(), Duration::from_secs(60), 3)
        .await
        .unwrap();
    let keys: Vec<&str> = got.iter().map(|w| w.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["plan-0", "plan-1", "plan-2"]);
}

/// Search on a value a family shares (submission id, correlation id, case reference) finds the
/// roots in their partial index and the families through `exchanges_root` (migration 0033): the
/// replays of a family are found, and at 10 million exchanges the page and the count are index
/// lookups, never a walk of the table or of another index.
#[tokio::test]
async fn search_on_a_family_value_finds_replays_through_their_root_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = journal_at(&path).await;
    let mut roots = Vec::new();
    for i in 0..30 {
        let mut e = exchange(&format!("fam-{i}"));
        e.correlation_id = format!("corr-{i}");
        e.case_ref = Some(format!("CASE-{}", i % 3));
        j.accept(e.clone(), event("incident.create")).await.unwrap();
        roots.push(e.id);
    }
    // A family of three generations under root 4 (CASE-1): a replay, and a replay of that.
    let now = OffsetDateTime::now_utc();
    j.park(roots[4], now, event("exchange.park")).await.unwrap();
    let child = j.replay(roots[4], event("exchange.replay")).await.unwrap();
    j.park(child, now, event("exchange.park")).await.unwrap();
    let grandchild = j.replay(child, event("exchange.replay")).await.unwrap();
    let c = Connection::open(&path).unwrap();
    let stored: i64 = c
        .query_row(
            "SELECT count(*) FROM exchanges WHERE correlation_id = 'corr-4' AND case_ref = 'CASE-1'
                 AND idempotency_key = 'fam-4'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 3, "a replay carries its root's values");
    let family: std::collections::BTreeSet<Uuid> = [roots[4], child, grandchild].into();
    for (key, value, want) in [
        ("submission_id", "fam-4", family.clone()),
        ("correlation_id", "corr-4", family.clone()),
        (
            "case_ref",
            "CASE-1",
            roots
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 == 1)
                .map(|(_, id)| *id)
                .chain([child, grandchild])
                .collect(),
        ),
    ] {
        let mut f = ExchangeFilter::default();
        f.set(key, value).unwrap();
        let page = j.list(&f, None, 100).await.unwrap();
        let got: std::collections::BTreeSet<Uuid> = page.items.iter().map(|s| s.id).collect();
        assert_eq!(got, want, "{key}={value}");
        assert_eq!(
            j.count(&f).await.unwrap(),
            want.len() as u64,
            "{key}={value}"
        );
        // The plan: the key's partial index for the roots, exchanges_root for their families.
        let w = crate::sql::filter(crate::sql::Dialect::Sqlite, &f, "");
        let index = match key {
            "submission_id" => "exchanges_key",
            "correlation_id" => "exchanges_corr",
            _ => "exchanges_case",
        };
        for q in [read::list_sql(&w, 50), read::count_sql(&w)] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
                .unwrap()
                .query_map(
                    rusqlite::params_from_iter(w.params.iter().map(read::bind)),
                    |r| r.get::<_, String>(3),
                )
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().any(|l| l.contains(&format!("INDEX {index}"))),
                "{key}: {plan:#?}"
            );
            assert!(
                plan.iter().any(|l| l.contains("INDEX exchanges_root")),
                "{key}: {plan:#?}"
            );
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN")),
                "{key}: {plan:#?}"
            );
        }
    }
}

/// The counts of exchanges by status, counted from the rows themselves.
fn counted(path: &std::path::Path) -> (i64, i64, i64) {
    let c = Connection::open(path).unwrap();
    let n = |s: &str| -> i64 {
        c.query_row(
            "SELECT count(*) FROM exchanges WHERE status = ?1",
            [s],
            |r| r.get(0),
        )
        .unwrap()
    };
    (n("pending"), n("delivered"), n("parked"))
}

async fn verify_chain(j: &SqliteJournal) -> u64 {
    let mut v = ChainVerifier::default();
    for r in j.audit_records(1, 100_000).await.unwrap() {
        v.check(&r).unwrap();
    }
    v.checked()
}

/// Accepts `n` exchanges (keys `PREFIX-i`) and claims them all for node `n1`.
async fn accept_and_claim(j: &SqliteJournal, prefix: &str, n: usize) -> Vec<crate::WorkItem> {
    for i in 0..n {
        j.accept(exchange(&format!("{prefix}-{i}")), event("incident.create"))
            .await
            .unwrap();
    }
    j.claim_due("n1", OffsetDateTime::now_utc(), Duration::from_secs(60), n)
        .await
        .unwrap()
}

/// Attempts queued together are recorded together: the refused one (a stale node) is answered
/// with its refusal and the others are recorded, each with its audit record and counts.
#[tokio::test]
async fn attempts_recorded_together_refuse_a_stale_node_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Arc::new(journal_at(&path).await);
    let work = accept_and_claim(&j, "g", 60).await;
    assert_eq!(work.len(), 60);
    let stale = work[17].id;
    let mut tasks = Vec::new();
    for w in &work {
        let (j, id) = (j.clone(), w.id);
        tasks.push(tokio::spawn(async move {
            let mut a = attempt(1, AttemptOutcome::Delivered, None);
            if id == stale {
                a.node = "n2".into();
            }
            let r = j
                .record_attempt(
                    id,
                    a,
                    Transition::Delivered {
                        target_ref: format!("ref-{id}"),
                    },
                    Prepared::default(),
                )
                .await;
            (id, r)
        }));
    }
    for t in tasks {
        let (id, r) = t.await.unwrap();
        if id == stale {
            assert!(matches!(r, Err(JournalError::Conflict(_))), "{r:?}");
        } else {
            r.unwrap();
        }
    }
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.delivered), (1, 59), "{s:?}");
    assert_eq!(counted(&path), (1, 59, 0));
    let d = j.get(stale).await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Pending);
    assert!(d.attempts.is_empty());
    // 60 accepted + 59 delivered.
    assert_eq!(verify_chain(&j).await, 119);
    // The lease holder can still record it.
    j.record_attempt(
        stale,
        attempt(1, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "ref".into(),
        },
        Prepared::default(),
    )
    .await
    .unwrap();
    assert_eq!(j.stats().await.unwrap().delivered, 60);
}

/// When a statement fails after an attempt's guard matched (here: its attempt row already
/// exists), the batch's attempts are rolled back and redone one at a time: only that attempt
/// fails, with nothing of it kept, and its neighbours are recorded. Accepts queued at the same
/// moment (in the same batches) are all acknowledged and kept.
#[tokio::test]
async fn an_attempt_failing_midway_fails_alone_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Arc::new(journal_at(&path).await);
    let work = accept_and_claim(&j, "f", 40).await;
    let bad = work[9].id;
    {
        let c = Connection::open(&path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute(
            "INSERT INTO attempts (exchange_id, number, started_at, finished_at, outcome, node)
             VALUES (?1, 1, 'x', 'x', 'retry', 'other')",
            [bad.to_string()],
        )
        .unwrap();
    }
    let mut tasks = Vec::new();
    for w in &work {
        let (j, id) = (j.clone(), w.id);
        tasks.push(tokio::spawn(async move {
            let r = j
                .record_attempt(
                    id,
                    attempt(1, AttemptOutcome::Parked, Some("rejected")),
                    Transition::Parked,
                    Prepared::default(),
                )
                .await;
            (id, r)
        }));
    }
    let mut accepts = Vec::new();
    for i in 0..20 {
        let j = j.clone();
        accepts.push(tokio::spawn(async move {
            j.accept(exchange(&format!("beside-{i}")), event("incident.create"))
                .await
        }));
    }
    for t in tasks {
        let (id, r) = t.await.unwrap();
        assert_eq!(r.is_err(), id == bad, "{id}: {r:?}");
    }
    for t in accepts {
        assert!(matches!(t.await.unwrap(), Ok(AcceptOutcome::Created)));
    }
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.parked), (1 + 20, 39), "{s:?}");
    assert_eq!(counted(&path), (1 + 20, 0, 39));
    let status: String = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT status FROM exchanges WHERE id = ?1",
            [bad.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "pending", "its update was rolled back");
    assert_eq!(verify_chain(&j).await, 40 + 39 + 20);
}

/// A replay shares its parent's payload and response instead of copying them; claims, reads
/// and retention see the same bytes as before, and deleting the parent's payloads by retention
/// leaves the pending replay's payload whole.
#[tokio::test]
async fn a_replay_shares_its_parents_payload_and_keeps_it_through_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = journal_at(&path).await;
    let mut e = exchange("share-1");
    e.payload = vec![b'p'; 3000];
    let (id, payload) = (e.id, e.payload.clone());
    j.accept(e, event("incident.create")).await.unwrap();
    let now = OffsetDateTime::now_utc();
    j.claim_due("n1", now, Duration::from_secs(30), 10)
        .await
        .unwrap();
    j.record_attempt(
        id,
        attempt(1, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    let child = j.replay(id, event("exchange.replay")).await.unwrap();
    let grandchild_parent = child;
    // Not copied: the child's row holds no payload of its own.
    let own: (i64, i64) = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT length(payload), payload_seq FROM exchanges WHERE id = ?1",
            [child.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(own.0, 0);
    let p = j.payloads(child).await.unwrap().unwrap();
    assert_eq!(p.original, payload);
    assert_eq!(p.response, b"{\"ok\":true}");
    assert_eq!(
        j.get(child).await.unwrap().unwrap().payload_bytes,
        payload.len() as u64
    );
    // Parked again and replayed again: the grandchild shares the original's payload too.
    let work = j
        .claim_due("n1", OffsetDateTime::now_utc(), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(
        work[0].payload, payload,
        "the claim returns the shared payload"
    );
    j.record_attempt(
        grandchild_parent,
        attempt(1, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    let grandchild = j
        .replay(grandchild_parent, event("exchange.replay"))
        .await
        .unwrap();
    assert_eq!(
        j.payloads(grandchild).await.unwrap().unwrap().original,
        payload
    );

    // Retention deletes the payloads of the parked parent and child, not of the pending
    // grandchild, which keeps its bytes.
    let r = j
        .apply_retention(
            &[RetentionPolicy {
                force: "demo".into(),
                kind: None,
                payloads: Some(std::time::Duration::from_secs(60)),
                metadata: None,
            }],
            OffsetDateTime::now_utc() + time::Duration::days(1),
            event("retention.apply"),
        )
        .await
        .unwrap();
    assert_eq!(r.payloads_deleted, 2);
    assert!(j.payloads(id).await.unwrap().unwrap().original.is_empty());
    assert!(
        j.payloads(child)
            .await
            .unwrap()
            .unwrap()
            .original
            .is_empty()
    );
    let kept = j.payloads(grandchild).await.unwrap().unwrap();
    assert_eq!(kept.original, payload);
    assert_eq!(kept.response, b"{\"ok\":true}");
    let work = j
        .claim_due("n1", OffsetDateTime::now_utc(), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].id, grandchild);
    assert_eq!(work[0].payload, payload);
}

#[tokio::test]
async fn a_cli_handle_opens_beside_a_writer_holding_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let server = journal_at(&path).await;
    server
        .accept(exchange("k-1"), event("incident.create"))
        .await
        .unwrap();
    // Another process in the middle of a write transaction, as a busy server is batch after
    // batch: an up-to-date journal opens without waiting for the lock.
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let cli = SqliteJournal::open(
        &path,
        OpenOptions {
            server: false,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "opening waited {:?} for the write lock",
        started.elapsed()
    );
    // Its writes wait for the lock and go through once it is free.
    let write = tokio::spawn(async move {
        cli.accept(exchange("k-2"), event("incident.create"))
            .await
            .map(|_| cli)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "wrote while another held the lock");
    holder.execute_batch("COMMIT").unwrap();
    let cli = write.await.unwrap().unwrap();
    assert_eq!(verify_chain(&cli).await, 2);
    drop(server);
}
