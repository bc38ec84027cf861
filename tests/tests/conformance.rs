//! One conformance suite for every journal backend (STYLE.md §11): each behaviour is written
//! once, as an async body over `Arc<dyn Journal>`, and run by a module per backend — SQLite on a
//! file in a fresh temporary directory, PostgreSQL on a fresh database created for the test
//! (through the `postgres` maintenance database at 127.0.0.1:5432, or `NMPP_TEST_PG_URL`) and
//! dropped afterwards.

use replay::{
    AcceptOutcome, Attempt, AttemptOutcome, AuditEvent, ClaimRequest, Direction, ExchangeFilter,
    HoldTarget, Journal, JournalError, NewExchange, NewReplayJob, OpenOptions, Prepared,
    ReplayJobState, ReplayOptions, RetentionPolicy, Status, TargetKey, Transition,
    audit::ChainVerifier,
};
use std::{collections::BTreeSet, future::Future, pin::Pin, sync::Arc, time::Duration};
use time::OffsetDateTime;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Backends

type Opened = Pin<Box<dyn Future<Output = Arc<dyn Journal>> + Send>>;

/// A fresh, empty journal of one backend, and a way to open more handles on it (another
/// gateway process).
struct Backend {
    name: &'static str,
    url: String,
    journal: Arc<dyn Journal>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<pg::TestDb>,
}

impl Backend {
    fn open_another(&self) -> Opened {
        let url = self.url.clone();
        Box::pin(async move { open(&url).await })
    }
    fn is_pg(&self) -> bool {
        self.name == "postgres"
    }
}

async fn open(url: &str) -> Arc<dyn Journal> {
    replay::open(
        url,
        OpenOptions {
            server: false,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("opening {}: {e}", replay::redact_url(url)))
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("journal.db").display());
    let journal = open(&url).await;
    Backend {
        name: "sqlite",
        url,
        journal,
        _dir: Some(dir),
        _db: None,
    }
}

async fn postgres() -> Backend {
    let db = pg::TestDb::create().await;
    let journal = open(&db.url).await;
    Backend {
        name: "postgres",
        url: db.url.clone(),
        journal,
        _dir: None,
        _db: Some(db),
    }
}

mod pg {
    //! A database per test, created through the maintenance database and dropped on drop.
    use tokio_postgres::NoTls;

    fn admin_url() -> String {
        std::env::var("NMPP_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    pub(super) struct TestDb {
        pub(super) name: String,
        pub(super) url: String,
    }

    pub(super) async fn admin() -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (start it: pg_ctlcluster 15 main start)");
        tokio::spawn(conn);
        client
    }

    impl TestDb {
        pub(super) async fn create() -> Self {
            let name = format!("nmpp_conf_{}", uuid::Uuid::new_v4().simple());
            admin()
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin_url();
            let url = match base.rfind('/') {
                Some(i) => format!("{}/{name}", &base[..i]),
                None => unreachable!("the admin URL names a database"),
            };
            Self { name, url }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let name = self.name.clone();
            // Drop may run inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let _ = admin()
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                });
            })
            .join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builders

fn exchange(force: &str, key: &str) -> NewExchange {
    NewExchange {
        id: Uuid::now_v7(),
        force: force.into(),
        kind: "incident.submitted".into(),
        direction: Direction::Inbound,
        source_system: "ihub".into(),
        target_system: "athena".into(),
        api_version: "ihub-sapi/v1".into(),
        model_version: "nmpp/1".into(),
        idempotency_key: key.into(),
        correlation_id: format!("corr-{key}"),
        case_ref: Some(format!("CASE-{key}")),
        payload_type: "application/json".into(),
        payload: format!("{{\"k\":\"{key}\"}}").into_bytes(),
        response: format!("{{\"receipt\":\"{key}\"}}").into_bytes(),
    }
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        time: OffsetDateTime::now_utc(),
        actor: "tester".into(),
        role: "operator".into(),
        force: Some("kent".into()),
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

fn attempt(node: &str, n: u32, outcome: AttemptOutcome, class: Option<&str>) -> Attempt {
    let now = OffsetDateTime::now_utc();
    Attempt {
        number: n,
        started_at: now,
        finished_at: now,
        outcome,
        error_class: class.map(Into::into),
        detail: class.map(|c| format!("failed: {c}")),
        http_status: None,
        node: node.into(),
    }
}

const LEASE: Duration = Duration::from_secs(30);

async fn accept(j: &dyn Journal, e: NewExchange) -> Uuid {
    let id = e.id;
    assert_eq!(
        j.accept(e, event("incident.create")).await.unwrap(),
        AcceptOutcome::Created
    );
    id
}

/// Accepts, claims and parks one exchange (class `rejected`); returns its id.
async fn parked(j: &dyn Journal, force: &str, key: &str) -> Uuid {
    let id = accept(j, exchange(force, key)).await;
    claim_one(j, "n1", id).await;
    j.record_attempt(
        id,
        attempt("n1", 1, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    id
}

/// Claims what is due and checks `id` is among it; the lease is a millisecond, so whatever else
/// was claimed on the way is claimable again by the next call.
async fn claim_one(j: &dyn Journal, node: &str, id: Uuid) {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let far = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let got = j
        .claim_due(node, far, Duration::from_millis(1), 10_000)
        .await
        .unwrap();
    assert!(
        got.iter().any(|w| w.id == id),
        "{node} could not claim {id}"
    );
}

async fn verify_chain(j: &dyn Journal) -> u64 {
    let mut v = ChainVerifier::default();
    let mut from = 1;
    loop {
        let page = j.audit_records(from, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(f) = v.check(r) {
                panic!("audit chain broken at {}: {}", f.seq, f.reason);
            }
        }
        from = page.last().unwrap().seq + 1;
    }
    v.checked()
}

async fn ids(j: &dyn Journal, f: &ExchangeFilter) -> BTreeSet<Uuid> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = j.list(f, cursor, 1000).await.unwrap();
        out.extend(page.items.iter().map(|s| s.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours, written once

async fn accept_is_idempotent_and_tells_a_different_payload(b: Backend) {
    let j = b.journal.as_ref();
    let first = accept(j, exchange("kent", "s-1")).await;
    match j
        .accept(exchange("kent", "s-1"), event("incident.create"))
        .await
        .unwrap()
    {
        AcceptOutcome::Duplicate {
            id,
            response,
            payload_differs,
        } => {
            assert_eq!(id, first);
            assert_eq!(response, b"{\"receipt\":\"s-1\"}");
            assert!(!payload_differs);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let mut changed = exchange("kent", "s-1");
    changed.payload = b"{\"k\":\"other\"}".to_vec();
    assert!(matches!(
        j.accept(changed, event("incident.create")).await.unwrap(),
        AcceptOutcome::Duplicate { id, payload_differs: true, .. } if id == first
    ));
    // Same key, another force or kind: a different exchange.
    accept(j, exchange("essex", "s-1")).await;
    let mut other_kind = exchange("kent", "s-1");
    other_kind.kind = "message.received".into();
    accept(j, other_kind).await;
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 3);
    let audit = j.audit_records(1, 100).await.unwrap();
    let results: Vec<&str> = audit.iter().map(|r| r.event.result.as_str()).collect();
    assert_eq!(
        results,
        ["success", "duplicate", "duplicate", "success", "success"]
    );
    assert_eq!(
        audit[1].event.object_id.as_deref(),
        Some(first.to_string().as_str())
    );
    // Duplicates inside one group commit resolve the same way.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let j = b.journal.clone();
        tasks.push(tokio::spawn(async move {
            j.accept(exchange("kent", "burst"), event("incident.create"))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap() == AcceptOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one of 20 concurrent copies is stored");
    assert_eq!(j.stats().await.unwrap().pending, 4);
    assert_eq!(verify_chain(j).await, 25);
}

async fn accept_refuses_an_id_that_is_not_v7(b: Backend) {
    let j = b.journal.as_ref();
    let mut e = exchange("kent", "v4");
    e.id = Uuid::new_v4();
    let err = j.accept(e, event("incident.create")).await.unwrap_err();
    assert!(matches!(err, JournalError::Invalid(_)), "{err:?}");
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 0);
    assert!(j.audit_records(1, 10).await.unwrap().is_empty());
}

async fn audit_chain_is_gap_free_across_handles(b: Backend) {
    let others = [b.open_another().await, b.open_another().await];
    let handles: Vec<Arc<dyn Journal>> =
        vec![b.journal.clone(), others[0].clone(), others[1].clone()];
    let mut tasks = Vec::new();
    for (h, j) in handles.iter().enumerate() {
        for i in 0..150 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                if i % 3 == 0 {
                    j.audit(event("exchange.view")).await.map(|_| ())
                } else {
                    j.accept(
                        exchange("kent", &format!("h{h}-{i}")),
                        event("incident.create"),
                    )
                    .await
                    .map(|_| ())
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let j = b.journal.as_ref();
    assert_eq!(verify_chain(j).await, 450);
    assert_eq!(j.stats().await.unwrap().audit_records, 450);
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 300);
    // audit() returns the record's place in the chain.
    let seq = j.audit(event("exchange.view")).await.unwrap();
    assert_eq!(seq, 451);
    let rec = j.audit_records(451, 1).await.unwrap();
    assert_eq!(rec[0].event.action, "exchange.view");
}

/// One submission arriving many times at once (iHub retrying while the first is in flight) is
/// stored once; every other copy is told the stored exchange and audited as a duplicate,
/// whichever group commit it lands in. (Which copies share a commit depends on timing; copies in
/// the very commit that stores the first are pinned down, for PostgreSQL, by the unit test
/// `postgres::write::tests::copies_of_one_key_in_one_batch_are_stored_once`.)
async fn concurrent_copies_of_one_submission_store_it_once(b: Backend) {
    // Other submissions first keep the writers busy, so that copies queue up together.
    let mut others = Vec::new();
    for n in 0..8 {
        let j = b.journal.clone();
        others.push(tokio::spawn(async move {
            j.accept(
                exchange("kent", &format!("other-{n}")),
                event("incident.create"),
            )
            .await
            .unwrap()
        }));
    }
    let mut tasks = Vec::new();
    for n in 0..24 {
        let j = b.journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut e = exchange("kent", "same-submission");
            if n % 2 == 1 {
                e.payload = b"{\"other\":true}".to_vec();
            }
            let payload = e.payload.clone();
            let id = e.id;
            (
                id,
                payload,
                j.accept(e, event("incident.create")).await.unwrap(),
            )
        }));
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        let (id, payload, outcome) = t.await.unwrap();
        match outcome {
            AcceptOutcome::Created => created.push((id, payload)),
            AcceptOutcome::Duplicate {
                id: first,
                payload_differs,
                ..
            } => duplicates.push((first, payload, payload_differs)),
        }
    }
    for t in others {
        assert_eq!(t.await.unwrap(), AcceptOutcome::Created);
    }
    assert_eq!(created.len(), 1, "exactly one copy is stored");
    let (stored_id, stored_payload) = &created[0];
    assert_eq!(duplicates.len(), 23);
    for (first, payload, differs) in &duplicates {
        assert_eq!(first, stored_id, "every copy is told the stored exchange");
        assert_eq!(*differs, payload != stored_payload);
    }
    let j = b.journal.as_ref();
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 9);
    assert_eq!(verify_chain(j).await, 32);
    let records = j.audit_records(1, 100).await.unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event.result == "duplicate")
            .count(),
        23
    );
}

/// A writer may chain onto the head it left last (PostgreSQL: without first reading it under
/// lock); when someone else moved the head since, nothing is lost, nothing is acknowledged
/// twice, and the chain stays one: turn by turn, each handle appends right after the other.
async fn audit_chain_survives_a_head_moved_by_another_handle(b: Backend) {
    let other = b.open_another().await;
    let handles = [b.journal.clone(), other.clone()];
    let mut expected_seq = 0;
    for round in 0..6 {
        for (h, j) in handles.iter().enumerate() {
            accept(j.as_ref(), exchange("kent", &format!("moved-{round}-{h}"))).await;
            expected_seq += 1;
            let seq = j.audit(event("exchange.view")).await.unwrap();
            expected_seq += 1;
            assert_eq!(
                seq, expected_seq,
                "round {round}, handle {h}: audit() tells its place"
            );
            let rec = &j.audit_records(expected_seq - 1, 1).await.unwrap()[0];
            assert_eq!(rec.event.action, "incident.create");
        }
    }
    let j = b.journal.as_ref();
    assert_eq!(verify_chain(j).await, expected_seq);
    assert_eq!(j.stats().await.unwrap().audit_records, expected_seq);
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 12);
    let head = j.ledger_head().await.unwrap();
    assert_eq!(head.size(), expected_seq);
    assert_eq!(other.ledger_head().await.unwrap(), head);
}

async fn leases_expire_and_a_stale_holder_is_refused(b: Backend) {
    let j = b.journal.as_ref();
    let id = accept(j, exchange("kent", "lease")).await;
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let got = j.claim_due("n1", now, LEASE, 10).await.unwrap();
    assert_eq!(got.iter().map(|w| w.id).collect::<Vec<_>>(), [id]);
    assert_eq!(got[0].attempts, 0);
    assert_eq!(got[0].idempotency_key, "lease");
    assert!(j.claim_due("n2", now, LEASE, 10).await.unwrap().is_empty());
    // n1 dies; its lease expires; n2 takes over.
    let later = now + time::Duration::seconds(31);
    let got = j.claim_due("n2", later, LEASE, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    // n1 comes back late: refused, nothing written.
    let err = j
        .record_attempt(
            id,
            attempt("n1", 1, AttemptOutcome::Delivered, None),
            Transition::Delivered {
                target_ref: "stale".into(),
            },
            Prepared::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, JournalError::Conflict(ref m) if m.contains("n2")),
        "{err:?}"
    );
    j.record_attempt(
        id,
        attempt("n2", 1, AttemptOutcome::Retry, Some("timeout")),
        Transition::RetryAt(later),
        Prepared::default(),
    )
    .await
    .unwrap();
    // A repeat of the same attempt (same node, same number) is refused too.
    let err = j
        .record_attempt(
            id,
            attempt("n2", 1, AttemptOutcome::Retry, Some("timeout")),
            Transition::RetryAt(later),
            Prepared::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::Conflict(_)), "{err:?}");
    let d = j.get(id).await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Pending);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].node, "n2");
    assert_eq!(d.summary.target_ref, None);
    // Unknown exchange.
    let err = j
        .record_attempt(
            Uuid::now_v7(),
            attempt("n2", 1, AttemptOutcome::Delivered, None),
            Transition::Parked,
            Prepared::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::NotFound(_)), "{err:?}");
}

async fn concurrent_claims_never_share_work(b: Backend) {
    let j = b.journal.clone();
    for i in 0..60 {
        accept(j.as_ref(), exchange("kent", &format!("c{i}"))).await;
    }
    let other = b.open_another().await;
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let mut tasks = Vec::new();
    for n in 0..6 {
        let j = if n % 2 == 0 { j.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            j.claim_due(&format!("node{n}"), now, LEASE, 15)
                .await
                .unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for t in tasks {
        for w in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(w.id), "{} claimed twice", w.id);
        }
    }
    assert_eq!(total, 60);
}

async fn attempts_move_exchanges_through_their_states(b: Backend) {
    let j = b.journal.as_ref();
    let id = accept(j, exchange("kent", "life")).await;
    claim_one(j, "n1", id).await;
    let retry_at = OffsetDateTime::now_utc() + time::Duration::seconds(60);
    j.record_attempt(
        id,
        attempt("n1", 1, AttemptOutcome::Retry, Some("upstream_5xx")),
        Transition::RetryAt(retry_at),
        Prepared::default(),
    )
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    assert!(
        j.claim_due("n1", now, LEASE, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    let got = j
        .claim_due("n1", retry_at + time::Duration::seconds(1), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(got[0].attempts, 1);
    j.record_attempt(
        id,
        attempt("n1", 2, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "42/1/26".into(),
        },
        Prepared {
            canonical: Some(b"{\"nmpp\":1}".to_vec()),
            target_payload: Some(b"<crime/>".to_vec()),
            mapping_version: Some("athena@1".into()),
        },
    )
    .await
    .unwrap();
    let d = j.get(id).await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Delivered);
    assert_eq!(d.summary.attempt_count, 2);
    assert_eq!(d.summary.target_ref.as_deref(), Some("42/1/26"));
    assert_eq!(d.mapping_version.as_deref(), Some("athena@1"));
    assert_eq!(
        d.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [AttemptOutcome::Retry, AttemptOutcome::Delivered]
    );
    assert_eq!(d.attempts[0].error_class.as_deref(), Some("upstream_5xx"));
    let p = j.payloads(id).await.unwrap().unwrap();
    assert_eq!(p.original, b"{\"k\":\"life\"}");
    assert_eq!(p.target_payload.as_deref(), Some(&b"<crime/>"[..]));
    let p2 = parked(j, "kent", "poison").await;
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.delivered, s.parked), (0, 1, 1));
    assert_eq!(
        j.get(p2)
            .await
            .unwrap()
            .unwrap()
            .summary
            .last_error_class
            .as_deref(),
        Some("rejected")
    );
    let actions: Vec<String> = j
        .audit_records(1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.action)
        .collect();
    assert!(
        actions.contains(&"exchange.deliver".to_owned()),
        "{actions:?}"
    );
    assert!(actions.contains(&"exchange.park".to_owned()), "{actions:?}");
}

async fn replay_links_children_and_refuses_what_it_must(b: Backend) {
    let j = b.journal.as_ref();
    let parent = parked(j, "kent", "rp").await;
    let child = j
        .replay_with(
            parent,
            ReplayOptions {
                target: Some("athena-dr".into()),
                mapping_version: Some("athena@2".into()),
                ..Default::default()
            },
            event("exchange.replay"),
        )
        .await
        .unwrap();
    let err = j
        .replay(parent, event("exchange.replay"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, JournalError::Conflict(ref m) if m.contains(&child.to_string())),
        "{err:?}"
    );
    let p = j.get(parent).await.unwrap().unwrap();
    assert_eq!(
        p.summary.status,
        Status::Parked,
        "the parent is not overwritten"
    );
    assert_eq!(p.children, [child]);
    let c = j.get(child).await.unwrap().unwrap();
    assert_eq!(c.summary.parent_id, Some(parent));
    assert_eq!(c.idempotency_key, "rp");
    assert_eq!(c.summary.target_system, "athena-dr");
    assert_eq!(c.requested_mapping_version.as_deref(), Some("athena@2"));
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let work = j.claim_due("n1", now, LEASE, 10).await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].id, child);
    assert_eq!(work[0].parent_id, Some(parent));
    assert_eq!(work[0].mapping_version.as_deref(), Some("athena@2"));
    assert_eq!(work[0].payload, b"{\"k\":\"rp\"}");
    // The child fails too: the parent may be replayed again.
    j.record_attempt(
        child,
        attempt("n1", 1, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    let second = j.replay(parent, event("exchange.replay")).await.unwrap();
    assert_eq!(
        j.get(parent).await.unwrap().unwrap().children,
        [child, second]
    );
    let f = ExchangeFilter {
        parent: Some(parent),
        ..Default::default()
    };
    assert_eq!(ids(j, &f).await, BTreeSet::from([child, second]));
    let pending = accept(j, exchange("kent", "not-parked")).await;
    assert!(matches!(
        j.replay(pending, event("exchange.replay")).await,
        Err(JournalError::Conflict(_))
    ));
    assert!(matches!(
        j.replay(Uuid::now_v7(), event("exchange.replay")).await,
        Err(JournalError::NotFound(_))
    ));
    let rec = j
        .audit_records(1, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event.action == "exchange.replay")
        .unwrap();
    assert_eq!(
        rec.event.object_id.as_deref(),
        Some(parent.to_string().as_str())
    );
    assert_eq!(rec.event.detail.unwrap()["child"], child.to_string());
    verify_chain(j).await;
}

async fn park_and_unpark_are_audited_and_guarded(b: Backend) {
    let j = b.journal.as_ref();
    let id = accept(j, exchange("kent", "pk")).await;
    let now = OffsetDateTime::now_utc();
    j.park(id, now, event("exchange.park")).await.unwrap();
    assert_eq!(
        j.get(id).await.unwrap().unwrap().summary.status,
        Status::Parked
    );
    assert!(
        j.claim_due("n1", now + time::Duration::seconds(5), LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a parked exchange is not delivered"
    );
    assert!(matches!(
        j.park(id, now, event("exchange.park")).await,
        Err(JournalError::Conflict(_))
    ));
    j.unpark(id, now, event("exchange.unpark")).await.unwrap();
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.parked), (1, 0));
    // Leased: a delivery is in flight, so it cannot be parked now.
    claim_one(j, "n1", id).await;
    let err = j.park(id, now, event("exchange.park")).await.unwrap_err();
    assert!(
        matches!(err, JournalError::Conflict(ref m) if m.contains("being delivered")),
        "{err:?}"
    );
    // Unparking a parent whose replay is live would deliver twice.
    let p = parked(j, "kent", "pk2").await;
    j.replay(p, event("exchange.replay")).await.unwrap();
    assert!(matches!(
        j.unpark(p, now, event("exchange.unpark")).await,
        Err(JournalError::Conflict(_))
    ));
    assert!(matches!(
        j.unpark(Uuid::now_v7(), now, event("exchange.unpark"))
            .await,
        Err(JournalError::NotFound(_))
    ));
    let actions: Vec<String> = j
        .audit_records(1, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.object_id.as_deref() == Some(id.to_string().as_str()))
        .map(|r| r.event.action)
        .collect();
    assert_eq!(actions, ["exchange.park", "exchange.unpark"]);
}

async fn search_filters_each_key_pages_and_counts(b: Backend) {
    let j = b.journal.as_ref();
    let t0 = OffsetDateTime::now_utc() - time::Duration::milliseconds(5);
    let mut all = Vec::new();
    for i in 0..6 {
        let mut e = exchange(if i % 2 == 0 { "kent" } else { "essex" }, &format!("q{i}"));
        if i == 5 {
            e.kind = "message.received".into();
            e.target_system = "storm".into();
            e.case_ref = None;
        }
        all.push(accept(j, e).await);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = parked(j, "kent", "q6").await;
    all.push(late);
    let child = j.replay(late, event("exchange.replay")).await.unwrap();
    all.push(child);

    let check = |f: ExchangeFilter, want: Vec<Uuid>| async move {
        let want: BTreeSet<Uuid> = want.into_iter().collect();
        assert_eq!(ids(j, &f).await, want, "{f:?}");
        assert_eq!(j.count(&f).await.unwrap(), want.len() as u64, "count {f:?}");
    };
    let f = |k: &str, v: &str| {
        let mut f = ExchangeFilter::default();
        f.set(k, v).unwrap();
        f
    };
    check(ExchangeFilter::default(), all.clone()).await;
    check(f("force", "essex"), vec![all[1], all[3], all[5]]).await;
    check(f("kind", "message.received"), vec![all[5]]).await;
    check(f("target", "storm"), vec![all[5]]).await;
    check(f("status", "parked"), vec![late]).await;
    check(f("status", "pending"), [&all[..6], &[child]].concat()).await;
    check(f("error-class", "rejected"), vec![late]).await;
    check(f("case_ref", "CASE-q3"), vec![all[3]]).await;
    check(f("submission_id", "q6"), vec![late, child]).await;
    check(f("correlation_id", "corr-q2"), vec![all[2]]).await;
    // A replay carries its family's values, and search on them finds it.
    check(f("correlation_id", "corr-q6"), vec![late, child]).await;
    check(f("case_ref", "CASE-q6"), vec![late, child]).await;
    check(f("parent", &late.to_string()), vec![child]).await;
    check(f("replays", "true"), vec![child]).await;
    check(f("replays", "false"), all[..7].to_vec()).await;
    let from = t1
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    check(f("from", &from), vec![late, child]).await;
    check(f("to", &from), all[..6].to_vec()).await;
    let mut combined = f("force", "kent");
    combined.set("status", "pending").unwrap();
    combined.from = Some(t0);
    check(combined, vec![all[0], all[2], all[4], child]).await;
    // Bad input names the key and the rule.
    assert!(
        ExchangeFilter::default()
            .set("colour", "red")
            .unwrap_err()
            .contains("unknown filter key")
    );
    assert!(
        ExchangeFilter::default()
            .set("from", "yesterday")
            .unwrap_err()
            .starts_with("from:")
    );
    // Paging: newest first, every row once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = j.list(&ExchangeFilter::default(), cursor, 3).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|s| (s.created_at, s.id)));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), all.len());
    let mut sorted = seen.clone();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.0));
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        sorted.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert_eq!(seen.first().unwrap().1, child, "newest first");
}

/// A job's rate holds across every handle (node) that steps it: two handles stepping as fast
/// as they can, asking for far more than the rate each time, together create no more children
/// than the rate allows (one second's burst, then the rate), and the job still completes with
/// one child per parent.
async fn a_job_rate_holds_across_nodes(b: Backend) {
    const RATE: u32 = 20;
    const N: usize = 60;
    let j = b.journal.clone();
    let mut parents = BTreeSet::new();
    for i in 0..N {
        parents.insert(parked(j.as_ref(), "kent", &format!("paced{i}")).await);
    }
    let mut filter = ExchangeFilter::default();
    filter.set("status", "parked").unwrap();
    let job = j
        .create_replay_job(
            NewReplayJob {
                filter,
                options: ReplayOptions {
                    rate_per_sec: Some(RATE),
                    ..Default::default()
                },
                created_by: "tester".into(),
            },
            event("exchange.replay_job.create"),
        )
        .await
        .unwrap();
    let other = b.open_another().await;
    let nodes = [j.clone(), other];
    let mut children = Vec::new();
    // (when the step was asked, when it answered, children so far)
    let mut steps: Vec<(std::time::Instant, std::time::Instant, usize)> = Vec::new();
    let start = std::time::Instant::now();
    let mut state = ReplayJobState::Running;
    while state == ReplayJobState::Running && start.elapsed() < Duration::from_secs(30) {
        for node in &nodes {
            let asked = std::time::Instant::now();
            match node
                .run_replay_job(job.id, 1000, event("exchange.replay"))
                .await
            {
                Ok(step) => {
                    children.extend(step.children.iter().copied());
                    state = step.job.state;
                }
                // Completed by the other node since.
                Err(JournalError::Conflict(_)) => state = ReplayJobState::Completed,
                Err(e) => panic!("{}: {e}", b.name),
            }
            steps.push((asked, std::time::Instant::now(), children.len()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(state, ReplayJobState::Completed, "{}", b.name);
    assert_eq!(children.len(), N, "{}: one child per parent", b.name);
    let replayed: BTreeSet<Uuid> = children.iter().map(|c| c.0).collect();
    assert_eq!(replayed, parents, "{}", b.name);
    // At no step had more been created than one second's burst plus the rate times the time
    // since the first step was asked (a step's own clock reading falls inside its call).
    let first = steps[0].0;
    for (_, answered, made) in &steps {
        let allowed = RATE as f64 * (1.0 + answered.duration_since(first).as_secs_f64());
        assert!(
            *made as f64 <= allowed + 1.0,
            "{}: {made} children {:?} after the first step, at {RATE}/s",
            b.name,
            answered.duration_since(first)
        );
    }
    // And the pace did not starve it: 60 at 20/s with a 20 burst takes about 2 s.
    let took = steps
        .last()
        .map(|s| s.1.duration_since(first))
        .unwrap_or_default();
    assert!(
        took >= Duration::from_millis(1900),
        "{}: {N} children at {RATE}/s in {took:?}: faster than the rate",
        b.name
    );
}

async fn bulk_replay_jobs_resume_and_never_duplicate(b: Backend) {
    let j = b.journal.as_ref();
    let mut parents = Vec::new();
    for i in 0..25 {
        parents.push(parked(j, "kent", &format!("bulk{i}")).await);
    }
    // Matching but not parked: passed over.
    let mut delivered = Vec::new();
    for i in 0..5 {
        let id = accept(j, exchange("kent", &format!("ok{i}"))).await;
        claim_one(j, "n1", id).await;
        j.record_attempt(
            id,
            attempt("n1", 1, AttemptOutcome::Delivered, None),
            Transition::Delivered {
                target_ref: "r".into(),
            },
            Prepared::default(),
        )
        .await
        .unwrap();
        delivered.push(id);
    }
    accept(j, exchange("essex", "elsewhere")).await;
    let mut filter = ExchangeFilter::default();
    filter.set("force", "kent").unwrap();
    assert_eq!(j.count(&filter).await.unwrap(), 30, "the dry-run count");
    let job = j
        .create_replay_job(
            NewReplayJob {
                filter: filter.clone(),
                options: ReplayOptions {
                    target: None,
                    mapping_version: Some("athena@2".into()),
                    ..Default::default()
                },
                created_by: "tester".into(),
            },
            event("exchange.replay_job.create"),
        )
        .await
        .unwrap();
    assert_eq!(job.planned, 30);
    assert_eq!(job.state, ReplayJobState::Running);
    // Work that arrives after the job was created is not part of it.
    parked(j, "kent", "after").await;
    let step = j
        .run_replay_job(job.id, 10, event("exchange.replay"))
        .await
        .unwrap();
    assert_eq!(step.children.len(), 10);
    assert_eq!(step.job.replayed, 10);
    // Cancel midway: it stops; resume: it continues where it stopped.
    let c = j
        .set_replay_job_cancelled(job.id, true, event("exchange.replay_job.cancel"))
        .await
        .unwrap();
    assert_eq!(c.state, ReplayJobState::Cancelled);
    assert!(matches!(
        j.run_replay_job(job.id, 10, event("exchange.replay")).await,
        Err(JournalError::Conflict(_))
    ));
    // A handle opened afresh (another process) resumes it.
    let other = b.open_another().await;
    other
        .set_replay_job_cancelled(job.id, false, event("exchange.replay_job.resume"))
        .await
        .unwrap();
    let mut children = step.children.clone();
    let mut last = step;
    while last.job.state == ReplayJobState::Running {
        last = other
            .run_replay_job(job.id, 7, event("exchange.replay"))
            .await
            .unwrap();
        children.extend(last.children.iter().copied());
    }
    assert_eq!(last.job.state, ReplayJobState::Completed);
    assert_eq!(last.job.replayed, 25);
    assert_eq!(last.job.skipped, 5);
    let replayed: BTreeSet<Uuid> = children.iter().map(|c| c.0).collect();
    assert_eq!(children.len(), 25, "one child per parent");
    assert_eq!(replayed, parents.iter().copied().collect());
    for (p, c) in &children {
        let d = j.get(*c).await.unwrap().unwrap();
        assert_eq!(d.summary.parent_id, Some(*p));
        assert_eq!(d.replay_job_id, Some(job.id));
        assert_eq!(d.requested_mapping_version.as_deref(), Some("athena@2"));
    }
    assert!(matches!(
        j.run_replay_job(job.id, 10, event("exchange.replay")).await,
        Err(JournalError::Conflict(_))
    ));
    // A second job over the same exchanges replays nothing twice: each parent has a live child.
    let mut parked_only = filter.clone();
    parked_only.set("status", "parked").unwrap();
    parked_only.set("replays", "false").unwrap();
    let again = j
        .create_replay_job(
            NewReplayJob {
                filter: parked_only,
                options: ReplayOptions::default(),
                created_by: "tester".into(),
            },
            event("exchange.replay_job.create"),
        )
        .await
        .unwrap();
    assert_eq!(again.planned, 26);
    let s = j
        .run_replay_job(again.id, 100, event("exchange.replay"))
        .await
        .unwrap();
    assert_eq!(
        s.children.len(),
        1,
        "only the exchange parked after the first job"
    );
    assert_eq!(s.job.skipped, 25);
    assert_eq!(j.replay_jobs(10).await.unwrap().len(), 2);
    assert_eq!(j.replay_job(job.id).await.unwrap().unwrap().replayed, 25);
    let audited = j
        .audit_records(1, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.event.action == "exchange.replay")
        .count();
    assert_eq!(audited, 26, "one audit record per child");
    verify_chain(j).await;
}

async fn retention_deletes_what_is_old_and_keeps_what_is_held(b: Backend) {
    let j = b.journal.as_ref();
    let mut done = Vec::new();
    for i in 0..8 {
        let id = accept(j, exchange("kent", &format!("r{i}"))).await;
        claim_one(j, "n1", id).await;
        j.record_attempt(
            id,
            attempt("n1", 1, AttemptOutcome::Delivered, None),
            Transition::Delivered {
                target_ref: "r".into(),
            },
            Prepared {
                canonical: Some(b"{}".to_vec()),
                target_payload: Some(b"<x/>".to_vec()),
                mapping_version: None,
            },
        )
        .await
        .unwrap();
        done.push(id);
    }
    let pending = accept(j, exchange("kent", "still-pending")).await;
    let other_kind = {
        let mut e = exchange("kent", "message");
        e.kind = "message.received".into();
        parked_from(j, e).await
    };
    let family = parked(j, "kent", "family").await;
    let child = j.replay(family, event("exchange.replay")).await.unwrap();
    let essex = parked(j, "essex", "e1").await;
    // Holds: one exchange (its family), one case.
    let h1 = j
        .place_hold(
            HoldTarget::Exchange { id: done[0] },
            "matter 1",
            event("hold.place"),
        )
        .await
        .unwrap();
    j.place_hold(
        HoldTarget::Case {
            force: "kent".into(),
            case_ref: "CASE-r1".into(),
        },
        "matter 2",
        event("hold.place"),
    )
    .await
    .unwrap();
    assert_eq!(j.holds().await.unwrap().len(), 2);
    assert!(j.get(done[0]).await.unwrap().unwrap().legal_hold);
    let day = Duration::from_secs(86_400);
    let policies = vec![
        RetentionPolicy {
            force: "kent".into(),
            kind: None,
            payloads: Some(day),
            metadata: Some(day * 5),
        },
        RetentionPolicy {
            force: "kent".into(),
            kind: Some("message.received".into()),
            payloads: Some(day),
            metadata: None,
        },
    ];
    // Two days on: payloads go (not held, not pending), metadata stays.
    let now = OffsetDateTime::now_utc();
    let r = j
        .apply_retention(&policies, now + time::Duration::days(2), event("retention"))
        .await
        .unwrap();
    // done[2..8] + family + child's parent?  child is pending: kept. other_kind (parked).
    assert_eq!(r.payloads_deleted, 6 + 1 + 1, "{r:?}");
    assert_eq!(r.exchanges_deleted, 0);
    let d = j.get(done[3]).await.unwrap().unwrap();
    assert!(d.payloads_deleted_at.is_some());
    assert_eq!(d.payload_bytes, 0);
    let p = j.payloads(done[3]).await.unwrap().unwrap();
    assert!(p.original.is_empty() && p.canonical.is_none() && p.target_payload.is_none());
    assert_eq!(
        p.response, b"{\"receipt\":\"r3\"}",
        "the acknowledgement is kept"
    );
    assert_eq!(
        j.payloads(done[0]).await.unwrap().unwrap().original,
        b"{\"k\":\"r0\"}"
    );
    assert_eq!(
        j.payloads(done[1]).await.unwrap().unwrap().original,
        b"{\"k\":\"r1\"}"
    );
    assert!(
        !j.payloads(pending)
            .await
            .unwrap()
            .unwrap()
            .original
            .is_empty()
    );
    // Seventy days on: metadata goes too, except what is held, pending, or in a live family.
    let far = now + time::Duration::days(70);
    let r = j
        .apply_retention(&policies, far, event("retention"))
        .await
        .unwrap();
    assert_eq!(r.exchanges_deleted, 6, "{r:?}");
    assert!(
        r.partitions_dropped.is_empty(),
        "held rows keep the partition: {r:?}"
    );
    for id in &done[2..] {
        assert!(j.get(*id).await.unwrap().is_none(), "{id} should be gone");
    }
    for id in [done[0], done[1], pending, other_kind, family, child, essex] {
        assert!(j.get(id).await.unwrap().is_some(), "{id} should be kept");
    }
    let s = j.stats().await.unwrap();
    assert_eq!(s.delivered, 2);
    assert_eq!(s.legal_holds, 2);
    // A deleted exchange's key may be used again.
    accept(j, exchange("kent", "r5")).await;
    // Release a hold; the family finishes; everything old may go now.
    j.release_hold(h1.id, event("hold.release")).await.unwrap();
    claim_one(j, "n1", child).await;
    j.record_attempt(
        child,
        attempt("n1", 1, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "c".into(),
        },
        Prepared::default(),
    )
    .await
    .unwrap();
    let r = j
        .apply_retention(&policies, far, event("retention"))
        .await
        .unwrap();
    // done[0] (released) and the family (parent and child) go; done[1] (case hold), pending,
    // other_kind (no metadata policy) and essex (no policy) stay.
    assert_eq!(r.exchanges_deleted, 3, "{r:?}");
    assert!(j.get(family).await.unwrap().is_none());
    assert!(j.get(child).await.unwrap().is_none());
    assert!(j.get(done[1]).await.unwrap().is_some());
    let deletions: Vec<_> = j
        .audit_records(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action == "exchange.delete")
        .collect();
    assert!(deletions.len() as u64 >= 3);
    let total: u64 = deletions
        .iter()
        .filter(|r| r.event.detail.as_ref().unwrap()["deleted"] == "exchanges")
        .map(|r| {
            r.event.detail.as_ref().unwrap()["exchanges"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        total, 9,
        "every deleted exchange is accounted for in the audit trail"
    );
    verify_chain(j).await;
    // Bad policies are refused with the reason.
    let bad = [RetentionPolicy {
        force: "kent".into(),
        kind: None,
        payloads: Some(day * 10),
        metadata: Some(day),
    }];
    assert!(matches!(
        j.apply_retention(&bad, far, event("retention")).await,
        Err(JournalError::Invalid(_))
    ));
}

async fn parked_from(j: &dyn Journal, e: NewExchange) -> Uuid {
    let id = accept(j, e).await;
    claim_one(j, "n1", id).await;
    j.record_attempt(
        id,
        attempt("n1", 1, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    id
}

async fn whole_partitions_are_dropped_when_everything_in_them_expired(b: Backend) {
    let j = b.journal.as_ref();
    // Ids of last month (a month that has ended, whose partition exists).
    let then = OffsetDateTime::now_utc() - time::Duration::days(31);
    for i in 0..4 {
        let mut e = exchange("kent", &format!("old{i}"));
        e.id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            then.unix_timestamp() as u64,
            i,
        ));
        parked_from(j, e).await;
    }
    // And one of this month, which no retention run drops.
    parked(j, "kent", "this-month").await;
    let day = Duration::from_secs(86_400);
    let policies = [RetentionPolicy {
        force: "kent".into(),
        kind: None,
        payloads: None,
        metadata: Some(day),
    }];
    let far = OffsetDateTime::now_utc() + time::Duration::days(70);
    let r = j
        .apply_retention(&policies, far, event("retention"))
        .await
        .unwrap();
    assert_eq!(r.exchanges_deleted, 5, "{r:?}");
    assert_eq!(r.attempts_deleted, 5, "{r:?}");
    if b.is_pg() {
        assert_eq!(r.partitions_dropped.len(), 1, "{r:?}");
    } else {
        assert!(r.partitions_dropped.is_empty());
    }
    assert_eq!(j.count(&ExchangeFilter::default()).await.unwrap(), 0);
    assert_eq!(j.stats().await.unwrap().parked, 0);
    // The journal goes on working (PostgreSQL recreates the partition).
    accept(j, exchange("kent", "new")).await;
    assert_eq!(j.stats().await.unwrap().pending, 1);
    verify_chain(j).await;
}

async fn stats_count_by_force_kind_and_status(b: Backend) {
    let j = b.journal.as_ref();
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    accept(j, exchange("kent", "s1")).await;
    accept(j, exchange("kent", "s2")).await;
    parked(j, "essex", "s3").await;
    let s = j.stats().await.unwrap();
    assert_eq!((s.pending, s.parked, s.delivered), (2, 1, 0));
    let groups: Vec<(String, Status, u64)> = s
        .groups
        .iter()
        .map(|g| (g.force.clone(), g.status, g.count))
        .collect();
    assert_eq!(
        groups,
        [
            ("essex".into(), Status::Parked, 1),
            ("kent".into(), Status::Pending, 2)
        ]
    );
    assert!(s.oldest_pending.unwrap() >= before);
    assert!(s.oldest_parked.unwrap() >= before);
    assert_eq!(s.replay_jobs_running, 0);
    assert_eq!(s.audit_records, 4);
}

/// Durable state: compare-and-set on the version, prefix listing, isolation between scopes,
/// and one winner when two handles race for the same version.
async fn state_is_compare_and_set_and_listed_by_prefix(b: Backend) {
    let j = b.journal.as_ref();
    assert_eq!(
        j.state_get("detect/kent", "cursor/records").await.unwrap(),
        None
    );
    let first = j
        .state_put("detect/kent", "cursor/records", None, b"one".to_vec())
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.value, b"one");
    // Creating it again is a conflict, and changes nothing.
    let again = j
        .state_put("detect/kent", "cursor/records", None, b"other".to_vec())
        .await;
    assert!(matches!(again, Err(JournalError::Conflict(_))), "{again:?}");
    let second = j
        .state_put("detect/kent", "cursor/records", Some(1), b"two".to_vec())
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    // A writer that saw version 1 lost the race.
    let stale = j
        .state_put("detect/kent", "cursor/records", Some(1), b"stale".to_vec())
        .await;
    assert!(matches!(stale, Err(JournalError::Conflict(_))), "{stale:?}");
    let got = j
        .state_get("detect/kent", "cursor/records")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.version, got.value.as_slice()), (2, b"two".as_slice()));

    // Scopes are separate; listing is by prefix, in key order, and `%`/`_` are literal.
    for (scope, key) in [
        ("detect/kent", "case/B"),
        ("detect/kent", "case/A"),
        ("detect/kent", "case_x"),
        ("detect/essex", "case/A"),
    ] {
        j.state_put(scope, key, None, format!("{scope}:{key}").into_bytes())
            .await
            .unwrap();
    }
    let keys = |v: Vec<replay::StateEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(j.state_list("detect/kent", "case/").await.unwrap()),
        vec!["case/A", "case/B"]
    );
    assert_eq!(
        keys(j.state_list("detect/essex", "").await.unwrap()),
        vec!["case/A"]
    );
    assert_eq!(
        keys(j.state_list("detect/kent", "case%").await.unwrap()),
        Vec::<String>::new()
    );
    let essex = j
        .state_get("detect/essex", "case/A")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(essex.value, b"detect/essex:case/A");

    // Empty keys and oversized values are refused by name.
    let bad = j.state_put("detect/kent", "", None, vec![]).await;
    assert!(
        matches!(bad, Err(JournalError::Invalid(ref m)) if m.contains("key")),
        "{bad:?}"
    );

    // Two handles (two gateway nodes) race from the same version: exactly one wins.
    let other = b.open_another().await;
    let mut tasks = Vec::new();
    for (n, h) in [b.journal.clone(), other.clone()].into_iter().enumerate() {
        for i in 0..4 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.state_put(
                    "detect/kent",
                    "lease",
                    None,
                    format!("{n}-{i}").into_bytes(),
                )
                .await
                .is_ok()
            }));
        }
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1, "exactly one creator");
    let lease = other
        .state_get("detect/kent", "lease")
        .await
        .unwrap()
        .unwrap();
    let mut tasks = Vec::new();
    for h in [b.journal.clone(), other.clone(), b.journal.clone(), other] {
        tasks.push(tokio::spawn(async move {
            h.state_put("detect/kent", "lease", Some(lease.version), b"x".to_vec())
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(
        won, 1,
        "exactly one compare-and-set from version {}",
        lease.version
    );
}

// ---------------------------------------------------------------------------------------------
// Delivery policy: skipped targets, defer, per-case ordering (issue 3 §3)

/// Ids claimed by `req`.
async fn claimed(j: &dyn Journal, req: ClaimRequest) -> BTreeSet<Uuid> {
    j.claim(req).await.unwrap().iter().map(|w| w.id).collect()
}

/// An exchange of `force` for `target` in case `case` (none: no case reference).
fn for_case(force: &str, target: &str, case: Option<&str>, key: &str) -> NewExchange {
    NewExchange {
        target_system: target.into(),
        case_ref: case.map(Into::into),
        ..exchange(force, key)
    }
}

async fn skipped_targets_wait_and_defer_charges_no_attempt(b: Backend) {
    let j = b.journal.as_ref();
    let kent1 = accept(j, exchange("kent", "skip-k1")).await;
    let essex = accept(j, exchange("essex", "skip-e1")).await;
    let kent2 = accept(j, exchange("kent", "skip-k2")).await;
    let kent_storm = accept(j, for_case("kent", "storm", None, "skip-ks")).await;
    let t0 = OffsetDateTime::now_utc() + time::Duration::seconds(1);

    // Kent's Athena is skipped (its breaker is open): only the other targets' work is claimed,
    // even though Kent's is older.
    let mut req = ClaimRequest::new("n1", t0, LEASE, 10);
    req.skip_targets = vec![TargetKey::new("kent", "athena")];
    assert_eq!(claimed(j, req).await, BTreeSet::from([essex, kent_storm]));
    // Skipped work was left alone: pending, unleased, no attempt; claimable once not skipped.
    let got = j
        .claim(ClaimRequest::new("n1", t0, LEASE, 10))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|w| w.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([kent1, kent2])
    );
    assert!(got.iter().all(|w| w.attempts == 0));

    // A half-open breaker refuses kent1: put back, due in a minute, no attempt charged.
    let until = t0 + time::Duration::seconds(60);
    j.defer(kent1, "n1", until).await.unwrap();
    let d = j.get(kent1).await.unwrap().unwrap();
    assert_eq!(d.summary.status, Status::Pending);
    assert!(d.attempts.is_empty(), "{:?}", d.attempts);
    // Not due before `until`, even for another node (its lease was released, not left to expire).
    let later = t0 + time::Duration::seconds(31);
    assert!(
        !claimed(j, ClaimRequest::new("n2", later, LEASE, 10))
            .await
            .contains(&kent1)
    );
    // Only the lease holder defers, and only while it holds the lease.
    let err = j.defer(kent1, "n1", until).await.unwrap_err();
    assert!(matches!(err, JournalError::Conflict(_)), "{err:?}");
    let err = j.defer(kent2, "n9", until).await.unwrap_err();
    assert!(matches!(err, JournalError::Conflict(_)), "{err:?}");
    let err = j.defer(Uuid::now_v7(), "n1", until).await.unwrap_err();
    assert!(matches!(err, JournalError::NotFound(_)), "{err:?}");

    // Due again at `until`: claimed with no attempt counted, and the first attempt is number 1.
    let due = until + time::Duration::seconds(1);
    let got = j
        .claim(ClaimRequest::new("n2", due, LEASE, 10))
        .await
        .unwrap();
    let w = got
        .iter()
        .find(|w| w.id == kent1)
        .expect("deferred work due again");
    assert_eq!(w.attempts, 0);
    j.record_attempt(
        kent1,
        attempt("n2", 1, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "42/1/26".into(),
        },
        Prepared::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        j.get(kent1).await.unwrap().unwrap().summary.status,
        Status::Delivered
    );
}

async fn ordered_targets_keep_each_case_in_order(b: Backend) {
    let j = b.journal.as_ref();
    let a1 = accept(j, for_case("kent", "athena", Some("A"), "ord-a1")).await;
    let a2 = accept(j, for_case("kent", "athena", Some("A"), "ord-a2")).await;
    let a3 = accept(j, for_case("kent", "athena", Some("A"), "ord-a3")).await;
    let b1 = accept(j, for_case("kent", "athena", Some("B"), "ord-b1")).await;
    let b2 = accept(j, for_case("kent", "athena", Some("B"), "ord-b2")).await;
    // Same case reference, other force: another case.
    let essex_a = accept(j, for_case("essex", "athena", Some("A"), "ord-ea")).await;
    // Same case at a target that is not ordered.
    let storm_a1 = accept(j, for_case("kent", "storm", Some("A"), "ord-s1")).await;
    let storm_a2 = accept(j, for_case("kent", "storm", Some("A"), "ord-s2")).await;
    // No case reference: never ordered.
    let none1 = accept(j, for_case("kent", "athena", None, "ord-n1")).await;
    let none2 = accept(j, for_case("kent", "athena", None, "ord-n2")).await;

    let short = Duration::from_millis(1);
    let t0 = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let at = |s: i64| t0 + time::Duration::seconds(s);
    let ordered = |owner: &str, now: OffsetDateTime, lease: Duration| {
        let mut r = ClaimRequest::new(owner, now, lease, 100);
        r.ordered_targets = vec!["athena".into()];
        r
    };

    // The first of each case at athena, everything at storm and everything without a case.
    let first = BTreeSet::from([a1, b1, essex_a, storm_a1, storm_a2, none1, none2]);
    assert_eq!(claimed(j, ordered("n1", at(0), short)).await, first);
    // Without ordering the same journal gives everything (the leases above were 1 ms).
    assert_eq!(
        claimed(j, ClaimRequest::new("n1", at(10), short, 100))
            .await
            .len(),
        10
    );

    // a1 is in flight at another node (long lease): a2 still waits.
    let got = claimed(j, ordered("n1", at(20), LEASE)).await;
    assert!(got.contains(&a1) && !got.contains(&a2), "{got:?}");
    let got = claimed(j, ordered("n2", at(21), LEASE)).await;
    assert!(!got.contains(&a2) && !got.contains(&a3), "{got:?}");
    // a1 fails and waits for a retry a minute later: still pending, a2 still waits.
    j.record_attempt(
        a1,
        attempt("n1", 1, AttemptOutcome::Retry, Some("upstream_5xx")),
        Transition::RetryAt(at(80)),
        Prepared::default(),
    )
    .await
    .unwrap();
    let got = claimed(j, ordered("n2", at(60), short)).await;
    assert!(!got.contains(&a2), "{got:?}");
    // a1 is parked (poisoned): parked exchanges never block; a2 goes, a3 waits for it.
    assert!(claimed(j, ordered("n1", at(90), LEASE)).await.contains(&a1));
    j.record_attempt(
        a1,
        attempt("n1", 2, AttemptOutcome::Parked, Some("rejected")),
        Transition::Parked,
        Prepared::default(),
    )
    .await
    .unwrap();
    let got = claimed(j, ordered("n1", at(100), LEASE)).await;
    assert!(got.contains(&a2) && !got.contains(&a3), "{got:?}");
    // a2 delivered: a3 is next.
    j.record_attempt(
        a2,
        attempt("n1", 1, AttemptOutcome::Delivered, None),
        Transition::Delivered {
            target_ref: "42/2/26".into(),
        },
        Prepared::default(),
    )
    .await
    .unwrap();
    let got = claimed(j, ordered("n1", at(200), LEASE)).await;
    assert!(got.contains(&a3) && !got.contains(&b2), "{got:?}");
}

// ---------------------------------------------------------------------------------------------
// One module per backend

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            conformance!(@tests $backend:
                accept_is_idempotent_and_tells_a_different_payload,
                accept_refuses_an_id_that_is_not_v7,
                audit_chain_is_gap_free_across_handles,
                audit_chain_survives_a_head_moved_by_another_handle,
                concurrent_copies_of_one_submission_store_it_once,
                leases_expire_and_a_stale_holder_is_refused,
                concurrent_claims_never_share_work,
                attempts_move_exchanges_through_their_states,
                replay_links_children_and_refuses_what_it_must,
                park_and_unpark_are_audited_and_guarded,
                search_filters_each_key_pages_and_counts,
                bulk_replay_jobs_resume_and_never_duplicate,
                a_job_rate_holds_across_nodes,
                retention_deletes_what_is_old_and_keeps_what_is_held,
                whole_partitions_are_dropped_when_everything_in_them_expired,
                stats_count_by_force_kind_and_status,
                skipped_targets_wait_and_defer_charges_no_attempt,
                ordered_targets_keep_each_case_in_order,
                state_is_compare_and_set_and_listed_by_prefix,
            );
        }
    };
    (@tests $backend:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::$backend().await).await;
            }
        )*
    };
}

conformance!(sqlite);
conformance!(postgres);

// ---------------------------------------------------------------------------------------------
// A journal that cannot persist says so; it never acknowledges.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_journal_answers_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let j = replay::open(
        &format!("sqlite://{}", dir.path().join("j.db").display()),
        OpenOptions {
            max_size_bytes: Some(256 * 1024),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut accepted = 0;
    let err = loop {
        let mut e = exchange("kent", &format!("big{accepted}"));
        e.payload = vec![b'x'; 8 * 1024];
        match j.accept(e, event("incident.create")).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "a 256 KiB journal cannot hold 8 MB");
    };
    assert!(matches!(err, JournalError::Unavailable(_)), "{err:?}");
    assert_eq!(j.stats().await.unwrap().pending, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_gives_space_back() {
    let b = sqlite().await;
    let path = b.url.trim_start_matches("sqlite://").to_owned();
    let j = b.journal.as_ref();
    for i in 0..200 {
        let mut e = exchange("kent", &format!("big{i}"));
        e.payload = vec![b'x'; 16 * 1024];
        parked_from(j, e).await;
    }
    let pages = |p: &str| {
        let c = rusqlite::Connection::open(p).unwrap();
        let n: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let v: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        (n, v)
    };
    let (before, mode) = pages(&path);
    assert_eq!(mode, 2, "auto_vacuum=INCREMENTAL from creation");
    let r = j
        .apply_retention(
            &[RetentionPolicy {
                force: "kent".into(),
                kind: None,
                payloads: None,
                metadata: Some(Duration::from_secs(60)),
            }],
            OffsetDateTime::now_utc() + time::Duration::days(1),
            event("retention"),
        )
        .await
        .unwrap();
    assert_eq!(r.exchanges_deleted, 200);
    let (after, _) = pages(&path);
    assert!(
        after * 4 < before,
        "the file shrank from {before} to {after} pages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_on_a_closed_port_is_unavailable_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let Err(err) = replay::open(
        &format!("postgres://postgres:secret-pw@127.0.0.1:{port}/nmpp"),
        OpenOptions::default(),
    )
    .await
    else {
        panic!("opened a journal on a closed port");
    };
    assert!(matches!(err, JournalError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("secret-pw"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_payloads_lz4_compressed_and_reads_them_back_whole() {
    let b = postgres().await;
    let j = b.journal.clone();
    // A payload large enough to be compressed (over 2 KB) and compressible (JSON).
    let mut x = exchange("kent", "big");
    let body = format!(
        "{{\"data\":[{}]}}",
        (0..200)
            .map(|i| format!("{{\"n\":{i},\"surname\":\"Crockett\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    x.payload = body.clone().into_bytes();
    let id = x.id;
    accept(j.as_ref(), x).await;
    let client = nmpp_tests::pg::connect(&b.url).await;
    let lz4_built = client
        .query_opt(
            "SELECT 1 FROM pg_settings
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    let method: Option<String> = client
        .query_one(
            "SELECT pg_column_compression(payload) FROM exchanges WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let expected = if lz4_built { "lz4" } else { "pglz" };
    assert_eq!(method.as_deref(), Some(expected));
    let stored = j.payloads(id).await.unwrap().expect("stored");
    assert_eq!(stored.original, body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_refuses_then_recovers_by_itself() {
    let b = postgres().await;
    let j = b.journal.clone();
    accept(j.as_ref(), exchange("kent", "before")).await;
    let name = b._db.as_ref().unwrap().name.clone();
    let admin = pg::admin().await;
    // The database goes away: no new connections, existing ones cut.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..3 {
        let r = j
            .accept(
                exchange("kent", &format!("down{i}")),
                event("incident.create"),
            )
            .await;
        assert!(matches!(r, Err(JournalError::Unavailable(_))), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(j.ping().await, Err(JournalError::Unavailable(_))));
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    // Back: the pool reconnects by itself.
    let mut ok = false;
    for _ in 0..50 {
        if j.accept(exchange("kent", "after"), event("incident.create"))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the journal did not recover");
    let f = ExchangeFilter::default();
    let keys: BTreeSet<String> = j
        .list(&f, None, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.submission_id)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["before".to_owned(), "after".to_owned()]),
        "nothing refused was stored"
    );
    verify_chain(j.as_ref()).await;
}

// ---------------------------------------------------------------------------------------------
// The audit ledger (issue 5): leaf hashes and the Merkle frontier move with every append,
// checkpoints, sink cursors, the audit-log query, and append-only rows on PostgreSQL.

mod ledger_bodies {
    use super::*;
    use replay::ledger::{AuditEntry, NoteSigner, tree};
    use replay::{AuditQuery, NewCheckpoint, SinkQuarantine, ledger_db::CHECKPOINT_ACTION};

    /// The leaf hashes of every stored record, recomputed from what the journal returns.
    async fn leaves(j: &dyn Journal) -> Vec<tree::Hash> {
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let page = j.audit_records(from, 1000).await.unwrap();
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                out.push(AuditEntry::from_record(r).unwrap().leaf_hash().unwrap());
            }
            from = last + 1;
        }
        out
    }

    pub(super) async fn ledger_frontier_tracks_every_append(b: Backend) {
        let j = b.journal.as_ref();
        assert_eq!(j.ledger_head().await.unwrap().size(), 0);
        assert_eq!(j.ledger_head().await.unwrap().root(), tree::empty_root());
        // Appends of every kind, from two handles at once.
        let other = b.open_another().await;
        let mut tasks = Vec::new();
        for (n, h) in [(0, b.journal.clone()), (1, other.clone())] {
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let mut ev = event("exchange.view");
                    ev.detail = Some(serde_json::json!({"i": i, "h": n, "f": 1.5}));
                    h.audit(ev).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        parked(j, "kent", "ledger-1").await;
        j.replay(
            parked(j, "essex", "ledger-2").await,
            event("exchange.replay"),
        )
        .await
        .unwrap();
        let head = j.ledger_head().await.unwrap();
        let all = leaves(j).await;
        assert_eq!(head.size(), j.stats().await.unwrap().audit_records);
        assert_eq!(head.size(), all.len() as u64);
        assert_eq!(
            head.root(),
            tree::root(&all),
            "the stored frontier is the RFC 6962 root of the stored records"
        );
        assert_eq!(other.ledger_head().await.unwrap(), head);
        // A reopened journal carries on from the same tree.
        drop(other);
        let again = b.open_another().await;
        again.audit(event("exchange.view")).await.unwrap();
        let all = leaves(again.as_ref()).await;
        assert_eq!(again.ledger_head().await.unwrap().root(), tree::root(&all));
    }

    pub(super) async fn checkpoints_are_signed_announced_and_only_grow(b: Backend) {
        let j = b.journal.as_ref();
        let signer = NoteSigner::generate("test.example/audit").unwrap();
        for _ in 0..5 {
            j.audit(event("exchange.view")).await.unwrap();
        }
        let head = j.ledger_head().await.unwrap();
        let cp = replay::ledger::Checkpoint::new("test.example/audit", head.size(), head.root());
        let note = cp.sign(&signer).unwrap();
        let seq = j
            .add_checkpoint(
                NewCheckpoint {
                    size: head.size(),
                    root: head.root(),
                    note: note.clone(),
                },
                event("ignored"),
            )
            .await
            .unwrap();
        assert_eq!(
            seq, 6,
            "the announcing record is appended after the tree it signs"
        );
        let rec = &j.audit_records(6, 1).await.unwrap()[0];
        assert_eq!(rec.event.action, CHECKPOINT_ACTION);
        assert_eq!(rec.event.object_id.as_deref(), Some("5"));
        assert_eq!(rec.event.detail.as_ref().unwrap()["note"], note.as_str());
        let stored = j.checkpoints().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].size, 5);
        assert_eq!(stored[0].audit_seq, 6);
        let hex_root: String = head.root().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(stored[0].root, hex_root);
        let opened = replay::ledger::Checkpoint::open(&stored[0].note, &[signer.verifier()]);
        assert_eq!(opened.unwrap(), cp);

        // Never two of one size, never smaller, never beyond the ledger, never a wrong root.
        let again = NewCheckpoint {
            size: 5,
            root: head.root(),
            note: note.clone(),
        };
        assert!(matches!(
            j.add_checkpoint(again, event("x")).await,
            Err(JournalError::Conflict(_))
        ));
        let beyond = NewCheckpoint {
            size: 99,
            root: head.root(),
            note: note.clone(),
        };
        assert!(matches!(
            j.add_checkpoint(beyond, event("x")).await,
            Err(JournalError::Invalid(_))
        ));
        let wrong_root = NewCheckpoint {
            size: 6,
            root: [7; 32],
            note,
        };
        assert!(matches!(
            j.add_checkpoint(wrong_root, event("x")).await,
            Err(JournalError::Invalid(_))
        ));
        assert_eq!(j.checkpoints().await.unwrap().len(), 1);
        assert_eq!(
            j.ledger_head().await.unwrap().size(),
            6,
            "refused checkpoints appended nothing"
        );
    }

    pub(super) async fn sink_cursors_persist_and_never_go_back(b: Backend) {
        let j = b.journal.as_ref();
        assert_eq!(j.sink_cursor("hec").await.unwrap(), None);
        j.set_sink_cursor("hec", 0, Some("chan-1")).await.unwrap();
        j.set_sink_cursor("hec", 10, None).await.unwrap();
        j.set_sink_cursor("hec", 4, None).await.unwrap();
        j.set_sink_cursor("sentinel", 3, None).await.unwrap();
        let again = b.open_another().await;
        let hec = again.sink_cursor("hec").await.unwrap().unwrap();
        assert_eq!(hec.delivered_through, 10, "a cursor never moves backwards");
        assert_eq!(
            hec.channel.as_deref(),
            Some("chan-1"),
            "the channel is kept"
        );
        let sentinel = again.sink_cursor("sentinel").await.unwrap().unwrap();
        assert_eq!((sentinel.delivered_through, sentinel.channel), (3, None));
        let q = SinkQuarantine {
            seq: 7,
            event_uid: Uuid::now_v7().to_string(),
            kind: "record".into(),
            class: "rejected".into(),
            status: Some(400),
            reason: "code 6: invalid data format".into(),
        };
        j.quarantine_sink_record("hec", q.clone()).await.unwrap();
        j.quarantine_sink_record("hec", q.clone()).await.unwrap();
        assert_eq!(again.sink_quarantine("hec").await.unwrap(), vec![q]);
        assert!(again.sink_quarantine("sentinel").await.unwrap().is_empty());
    }

    pub(super) async fn audit_log_query_filters_and_pages(b: Backend) {
        let j = b.journal.as_ref();
        let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        for i in 0..30u32 {
            let mut ev = event(if i % 3 == 0 {
                "exchange.view"
            } else {
                "exchange.list"
            });
            ev.time = t0 + time::Duration::milliseconds(i64::from(i) * 250);
            ev.actor = if i % 2 == 0 { "alice" } else { "bob" }.into();
            ev.force = Some(if i < 10 { "kent" } else { "essex" }.into());
            ev.result = if i == 7 { "denied" } else { "success" }.into();
            ev.correlation_id = Some(format!("corr-{}", i / 5));
            j.audit(ev).await.unwrap();
        }
        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            q
        };
        let seqs = |p: &replay::Page<replay::AuditRecord>| -> Vec<u64> {
            p.items.iter().map(|r| r.seq).collect()
        };
        // Newest first.
        let all = j
            .search_audit(&AuditQuery::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(seqs(&all), (1..=30).rev().collect::<Vec<_>>());
        assert_eq!(all.next, None);
        let alice = q(|q| q.actor = Some("alice".into()));
        let alice = j.search_audit(&alice, None, 100).await.unwrap();
        assert_eq!(alice.items.len(), 15);
        let corr = q(|q| q.correlation_id = Some("corr-2".into()));
        let corr = j.search_audit(&corr, None, 100).await.unwrap();
        assert_eq!(seqs(&corr), vec![15, 14, 13, 12, 11]);
        let denied = q(|q| q.result = Some("denied".into()));
        let denied = j.search_audit(&denied, None, 100).await.unwrap();
        assert_eq!(seqs(&denied), vec![8]);
        let kent_views = AuditQuery {
            force: Some("kent".into()),
            action: Some("exchange.view".into()),
            ..Default::default()
        };
        let kv = j.search_audit(&kent_views, None, 100).await.unwrap();
        assert_eq!(seqs(&kv), vec![10, 7, 4, 1]);
        // Time window [from, to): records 5..=8 are at t0 + 1.0 s … 1.75 s.
        let window = AuditQuery {
            from: Some(t0 + time::Duration::milliseconds(1000)),
            to: Some(t0 + time::Duration::milliseconds(2000)),
            ..Default::default()
        };
        let w = j.search_audit(&window, None, 100).await.unwrap();
        assert_eq!(seqs(&w), vec![8, 7, 6, 5]);
        // Paging: three pages of 12, 12, 6, no overlap, no gap.
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let p = j
                .search_audit(&AuditQuery::default(), before, 12)
                .await
                .unwrap();
            got.extend(seqs(&p));
            match p.next {
                Some(n) => before = Some(n as u64),
                None => break,
            }
        }
        assert_eq!(got, (1..=30).rev().collect::<Vec<_>>());
    }

    /// The gateway's ledger runtime over each backend: checkpoints only when records are
    /// uncovered (its own announcement does not count), and a full and a filtered export verify.
    pub(super) async fn gateway_checkpoints_and_exports_verify(b: Backend) {
        let j = b.journal.clone();
        let dir = tempfile::tempdir().unwrap();
        let cfg = gateway::config::AuditConfig {
            key_file: dir.path().join("ledger.key"),
            ..Default::default()
        };
        let signer = gateway::ledger::load_signer(&cfg).unwrap();
        let ledger = gateway::ledger::AuditLedger::new(j.clone(), signer, &cfg).unwrap();
        assert_eq!(
            ledger.checkpoint().await.unwrap(),
            None,
            "nothing to sign yet"
        );
        for i in 0..20 {
            let mut ev = event("exchange.view");
            ev.actor = if i % 4 == 0 { "alice" } else { "bob" }.into();
            j.audit(ev).await.unwrap();
        }
        assert_eq!(ledger.checkpoint().await.unwrap(), Some(20));
        assert_eq!(
            ledger.checkpoint().await.unwrap(),
            None,
            "a checkpoint's own announcement does not call for another"
        );
        j.audit(event("exchange.view")).await.unwrap();
        assert_eq!(ledger.checkpoint().await.unwrap(), Some(22));
        // The key survives: loading it again gives the same public key.
        let again = gateway::ledger::load_signer(&cfg).unwrap();
        assert_eq!(again.verifier(), ledger.verifier());

        let full = dir.path().join("full");
        let done = ledger
            .export(
                &full,
                replay::ledger::RecordFormat::Csv,
                Default::default(),
                "tester",
                None,
            )
            .await
            .unwrap();
        // Everything up to the newest checkpoint; its own announcement (record 23) is not
        // covered and needs none.
        assert_eq!(done.summary.manifest.tree_size, 22);
        assert_eq!(done.summary.manifest.records, 22);
        let report = replay::ledger::verify_bundle(&full).unwrap();
        assert!(report.is_intact(), "{:?}", report.first_problem());
        assert_eq!(report.checkpoints_verified, 2);

        let alice = dir.path().join("alice");
        let filter = replay::ledger::ExportFilter {
            actor: Some("alice".into()),
            ..Default::default()
        };
        let done = ledger
            .export(
                &alice,
                replay::ledger::RecordFormat::Jsonl,
                filter,
                "tester",
                None,
            )
            .await
            .unwrap();
        assert_eq!(done.summary.manifest.records, 5);
        let report = replay::ledger::verify_bundle(&alice).unwrap();
        assert!(report.is_intact(), "{:?}", report.first_problem());
        assert_eq!(report.inclusion_proofs_verified, 5);
    }

    /// Audit retention (issue 5, item 6) over each backend: records past their period lose
    /// their content only after an `audit.retention.deleted` record naming them is covered by a
    /// signed checkpoint; legal holds, a force kept forever, recent records and records a sink
    /// has not shipped are left alone; the chain, a full export and a filtered export still
    /// verify; and a pruned record nothing explains is named by `verify_chain`.
    pub(super) async fn audit_retention_prunes_behind_a_checkpointed_deletion_record(b: Backend) {
        let j = b.journal.clone();
        let dir = tempfile::tempdir().unwrap();
        let cfg = gateway::config::AuditConfig {
            key_file: dir.path().join("ledger.key"),
            ..Default::default()
        };
        let signer = gateway::ledger::load_signer(&cfg).unwrap();
        let ledger = gateway::ledger::AuditLedger::new(j.clone(), signer, &cfg).unwrap();
        let now = OffsetDateTime::now_utc();
        let old = now - time::Duration::days(40);
        let held_ex = accept(j.as_ref(), exchange("kent", "ret-held")).await;
        let free_ex = accept(j.as_ref(), exchange("kent", "ret-free")).await;
        let append = |force: Option<&str>, object: Option<Uuid>, at: OffsetDateTime| {
            let mut ev = event("exchange.view");
            ev.force = force.map(str::to_owned);
            ev.object_id = object.map(|u| u.to_string());
            ev.time = at;
            ev.source_ip = Some("10.9.8.7".into());
            ev.detail = Some(serde_json::json!({"status": 200}));
            let j = j.clone();
            async move { j.audit(ev).await.unwrap() }
        };
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(append(Some("kent"), Some(held_ex), old).await);
        }
        let mut free = Vec::new();
        for _ in 0..6 {
            free.push(append(Some("kent"), Some(free_ex), old).await);
        }
        let mut essex = Vec::new();
        for _ in 0..4 {
            essex.push(append(Some("essex"), None, old).await);
        }
        let mut no_force = Vec::new();
        for _ in 0..4 {
            no_force.push(append(None, None, old).await);
        }
        let mut recent = Vec::new();
        for _ in 0..4 {
            recent.push(append(Some("kent"), Some(free_ex), now).await);
        }
        let mut hold_ev = event("legal_hold.place");
        hold_ev.object_type = Some("legal_hold".into());
        let hold = j
            .place_hold(HoldTarget::Exchange { id: held_ex }, "case review", hold_ev)
            .await
            .unwrap();
        ledger.checkpoint().await.unwrap();
        // The only sink has shipped up to the last "free" record.
        j.set_sink_cursor("splunk", *free.last().unwrap(), None)
            .await
            .unwrap();
        let sinks = vec!["splunk".to_owned()];
        let policy = replay::AuditRetentionPolicy {
            default: Some(Duration::from_secs(30 * 86_400)),
            forces: [("essex".to_owned(), None)].into_iter().collect(),
        };
        let mut template = event(replay::ledger_db::RETENTION_DELETED_ACTION);
        template.actor = "retention-test".into();

        // Dry run: says what would go and why the rest stays; changes nothing.
        let before = j.ledger_head().await.unwrap().size();
        let dry = ledger
            .apply_retention(&policy, &sinks, now, true, &template)
            .await
            .unwrap();
        assert_eq!(dry.due, 6, "{dry:?}");
        assert_eq!(dry.held, 6, "{dry:?}");
        assert_eq!(dry.through, *free.last().unwrap());
        assert_eq!(dry.slowest_sink.as_ref().unwrap().sink, "splunk");
        assert_eq!(
            (dry.first_due, dry.last_due),
            (Some(free[0]), Some(free[5]))
        );
        assert_eq!(dry.pruned, 0);
        assert_eq!(
            j.ledger_head().await.unwrap().size(),
            before,
            "a dry run writes nothing"
        );
        assert!(
            j.audit_records(free[0], 1).await.unwrap()[0]
                .pruned
                .is_none()
        );

        // Apply: only what the sink has shipped.
        let r = ledger
            .apply_retention(&policy, &sinks, now, false, &template)
            .await
            .unwrap();
        assert_eq!((r.pruned, r.held), (6, 6), "{r:?}");
        assert_eq!(r.deletion_records.len(), 1);
        let d1 = r.deletion_records[0];
        let cps = j.checkpoints().await.unwrap();
        assert!(
            cps.iter().any(|c| c.size >= d1 && c.audit_seq > d1),
            "a checkpoint signed after the deletion record covers it"
        );
        let deletion = &j.audit_records(d1, 1).await.unwrap()[0];
        assert_eq!(
            deletion.event.action,
            replay::ledger_db::RETENTION_DELETED_ACTION
        );
        assert_eq!(deletion.event.actor, "retention-test");
        let detail = deletion.event.detail.as_ref().unwrap();
        assert_eq!(detail["ranges"], serde_json::json!([[free[0], free[5]]]));
        assert_eq!(detail["count"], 6);
        assert_eq!(detail["heldExempt"], 6);
        assert_eq!(detail["slowestSink"], "splunk");
        for &s in &free {
            let rec = &j.audit_records(s, 1).await.unwrap()[0];
            let p = rec
                .pruned
                .as_ref()
                .unwrap_or_else(|| panic!("{s} not pruned"));
            assert_eq!(p.by, d1);
            assert_eq!(p.leaf_hash.len(), 64);
            assert_eq!(rec.event.actor, "");
            assert_eq!(rec.event.force, None);
            assert_eq!(rec.event.object_id, None);
            assert_eq!(rec.event.source_ip, None);
            assert_eq!(rec.event.detail, None);
        }
        for &s in held.iter().chain(&essex).chain(&no_force).chain(&recent) {
            assert!(
                j.audit_records(s, 1).await.unwrap()[0].pruned.is_none(),
                "record {s} was pruned"
            );
        }

        // The sink catches up: the record of no force goes too (the default period), essex is
        // kept forever, recent records and the held exchange's stay.
        let head = j.ledger_head().await.unwrap().size();
        j.set_sink_cursor("splunk", head, None).await.unwrap();
        let r = ledger
            .apply_retention(&policy, &sinks, now, false, &template)
            .await
            .unwrap();
        assert_eq!((r.pruned, r.held), (4, 6), "{r:?}");
        assert!(r.slowest_sink.is_none());
        for &s in &no_force {
            assert!(j.audit_records(s, 1).await.unwrap()[0].pruned.is_some());
        }
        // Nothing more to do: no empty deletion record is written.
        let size = j.ledger_head().await.unwrap().size();
        j.set_sink_cursor("splunk", size, None).await.unwrap();
        let r = ledger
            .apply_retention(&policy, &sinks, now, false, &template)
            .await
            .unwrap();
        assert_eq!((r.pruned, r.deletion_records.len()), (0, 0), "{r:?}");

        // Releasing the hold lets its records go at the next run.
        j.release_hold(hold.id, event("legal_hold.release"))
            .await
            .unwrap();
        let size = j.ledger_head().await.unwrap().size();
        j.set_sink_cursor("splunk", size, None).await.unwrap();
        let r = ledger
            .apply_retention(&policy, &sinks, now, false, &template)
            .await
            .unwrap();
        assert_eq!((r.pruned, r.held), (6, 0), "{r:?}");

        // The journal's chain verifies through pruned records…
        let chain = gateway::audit::verify_chain(j.as_ref()).await.unwrap();
        assert!(chain.first_bad.is_none(), "{:?}", chain.first_bad);
        assert_eq!(chain.records, j.ledger_head().await.unwrap().size());
        // …and so do a full export (pruned rows written as Seq and LeafHash) and a filtered one.
        for (name, filter) in [
            ("full", replay::ledger::ExportFilter::default()),
            (
                "kent",
                replay::ledger::ExportFilter {
                    force: Some("kent".into()),
                    ..Default::default()
                },
            ),
        ] {
            let out = dir.path().join(name);
            let done = ledger
                .export(
                    &out,
                    replay::ledger::RecordFormat::Csv,
                    filter,
                    "tester",
                    None,
                )
                .await
                .unwrap();
            let report = replay::ledger::verify_bundle(&out).unwrap();
            assert!(report.is_intact(), "{name}: {:?}", report.first_problem());
            let text = std::fs::read_to_string(out.join("records.csv")).unwrap();
            let pruned_rows = text
                .lines()
                .filter(|l| l.ends_with(",,,,,,,,,,,,,,,,,"))
                .count();
            if name == "full" {
                assert_eq!(
                    done.summary.manifest.records,
                    done.summary.manifest.tree_size
                );
                assert_eq!(pruned_rows, 16, "{text}");
                assert!(!text.contains("10.9.8.7,") || text.matches("10.9.8.7").count() == 8);
            } else {
                assert_eq!(pruned_rows, 0, "a filtered export holds no pruned row");
            }
        }

        // A policy with no per-force period: only essex's old records are left to go.
        let default_only = replay::AuditRetentionPolicy {
            default: Some(Duration::from_secs(30 * 86_400)),
            forces: Default::default(),
        };
        let r = ledger
            .apply_retention(&default_only, &[], now, true, &template)
            .await
            .unwrap();
        assert_eq!(
            (r.due, r.first_due, r.last_due),
            (4, Some(essex[0]), Some(essex[3]))
        );

        // Pruning only goes through a deletion record that a checkpoint covers.
        let err = j.prune_audit(recent[0]).await.unwrap_err();
        assert!(
            err.to_string().contains("not an audit.retention.deleted"),
            "{err}"
        );
        let mut fake = template.clone();
        fake.detail =
            Some(serde_json::json!({"ranges": [[recent[0], recent[3]]], "before": "9999"}));
        let uncovered = j.audit(fake).await.unwrap();
        let err = j.prune_audit(uncovered).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("not covered by a signed checkpoint"),
            "{err}"
        );
        assert!(
            j.audit_records(recent[0], 1).await.unwrap()[0]
                .pruned
                .is_none()
        );
    }

    /// SQLite cannot refuse an edit to its file; `verify_chain` names a record whose content was
    /// removed without a deletion record naming it.
    pub(super) async fn sqlite_unexplained_prune_is_named(b: Backend) {
        let j = b.journal.clone();
        let dir = tempfile::tempdir().unwrap();
        let cfg = gateway::config::AuditConfig {
            key_file: dir.path().join("ledger.key"),
            ..Default::default()
        };
        let signer = gateway::ledger::load_signer(&cfg).unwrap();
        let ledger = gateway::ledger::AuditLedger::new(j.clone(), signer, &cfg).unwrap();
        for _ in 0..5 {
            j.audit(event("exchange.view")).await.unwrap();
        }
        ledger.checkpoint().await.unwrap();
        let path = b.url.strip_prefix("sqlite://").unwrap().to_owned();
        tokio::task::spawn_blocking(move || {
            let c = rusqlite::Connection::open(path).unwrap();
            c.execute(
                "UPDATE audit SET actor = '', role = '', force = NULL, action = '', \
                 object_type = NULL, object_id = NULL, result = '', source_ip = NULL, \
                 detail = NULL, pruned_by = 6 WHERE seq = 3",
                [],
            )
            .unwrap();
        })
        .await
        .unwrap();
        let chain = gateway::audit::verify_chain(j.as_ref()).await.unwrap();
        let bad = chain.first_bad.expect("the silent prune is found");
        assert_eq!(bad.seq, 3, "{}", bad.reason);
        assert!(
            bad.reason.contains("no audit.retention.deleted record"),
            "{}",
            bad.reason
        );
    }

    /// PostgreSQL: a prune gets past the append-only trigger only through `audit_prune()`; a
    /// role that does not own the tables cannot prune by UPDATE even with the marker set, but can
    /// call the function for a checkpointed deletion record.
    pub(super) async fn postgres_prune_only_through_audit_prune(b: Backend) {
        let j = b.journal.clone();
        let dir = tempfile::tempdir().unwrap();
        let cfg = gateway::config::AuditConfig {
            key_file: dir.path().join("ledger.key"),
            ..Default::default()
        };
        let signer = gateway::ledger::load_signer(&cfg).unwrap();
        let ledger = gateway::ledger::AuditLedger::new(j.clone(), signer, &cfg).unwrap();
        let old = OffsetDateTime::now_utc() - time::Duration::days(40);
        for _ in 0..4 {
            let mut ev = event("exchange.view");
            ev.time = old;
            j.audit(ev).await.unwrap();
        }
        let mut del = event(replay::ledger_db::RETENTION_DELETED_ACTION);
        del.detail = Some(serde_json::json!({"ranges": [[1, 2]], "before": "2999-01-01T00:00:00"}));
        let d = j.audit(del).await.unwrap();
        ledger.checkpoint().await.unwrap();

        let role = format!("nmpp_gw_{}", Uuid::new_v4().simple());
        let (owner, conn) = tokio_postgres::connect(&b.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        owner
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON audit, ledger_checkpoints TO {role};"
            ))
            .await
            .unwrap();
        let blank = "UPDATE audit SET actor = '', role = '', force = NULL, action = '', \
                     object_type = NULL, object_id = NULL, result = '', source_ip = NULL, \
                     user_agent = NULL, correlation_id = NULL, detail = NULL";
        // The owner without the function, and the role even with the marker set: refused.
        let err = owner
            .batch_execute(&format!("{blank}, pruned_by = {d} WHERE seq = 3"))
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{err:?}");
        let role_url = b.url.replacen("postgres@", &format!("{role}@"), 1);
        let (gw, conn) = tokio_postgres::connect(&role_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let err = gw
            .batch_execute(&format!(
                "BEGIN; SELECT set_config('nmpp.audit_prune', '{d}', true); \
                 {blank}, pruned_by = {d} WHERE seq = 3; COMMIT"
            ))
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{err:?}");
        let _ = gw.batch_execute("ROLLBACK").await;
        // Through the function: exactly what the deletion record names.
        let n: i64 = gw
            .query_one("SELECT audit_prune($1)", &[&(d as i64)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        let pruned: Vec<i64> = gw
            .query(
                "SELECT seq FROM audit WHERE pruned_by IS NOT NULL ORDER BY seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pruned, vec![1, 2]);
        // A record that is not a deletion record cannot be used to prune.
        let err = gw
            .query_one("SELECT audit_prune(3)", &[])
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("not an audit.retention.deleted"),
            "{err:?}"
        );
        let chain = gateway::audit::verify_chain(j.as_ref()).await.unwrap();
        assert!(chain.first_bad.is_none(), "{:?}", chain.first_bad);
        drop(gw);
        owner
            .batch_execute(&format!(
                "REVOKE ALL ON audit, ledger_checkpoints FROM {role}; DROP ROLE {role}"
            ))
            .await
            .unwrap();
    }

    /// PostgreSQL: the gateway's connection cannot update, delete or truncate audit rows.
    pub(super) async fn postgres_audit_rows_are_append_only(b: Backend) {
        let j = b.journal.as_ref();
        for _ in 0..3 {
            j.audit(event("exchange.view")).await.unwrap();
        }
        let (client, conn) = tokio_postgres::connect(&b.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for sql in [
            "UPDATE audit SET actor = 'mallory' WHERE seq = 2",
            "UPDATE audit SET leaf_hash = 'x' WHERE seq = 2",
            "DELETE FROM audit WHERE seq = 3",
            "TRUNCATE audit",
        ] {
            let err = client.batch_execute(sql).await.unwrap_err();
            assert!(
                err.to_string().contains("append-only")
                    || format!("{err:?}").contains("append-only"),
                "{sql}: {err:?}"
            );
        }
        assert_eq!(j.audit_records(1, 10).await.unwrap().len(), 3);
        assert_eq!(
            j.audit_records(2, 1).await.unwrap()[0].event.actor,
            "tester"
        );
        assert_eq!(verify_chain(j).await, 3);
    }
}

macro_rules! ledger_conformance {
    ($backend:ident) => {
        mod $backend {
            ledger_conformance!(@tests $backend:
                ledger_frontier_tracks_every_append,
                checkpoints_are_signed_announced_and_only_grow,
                sink_cursors_persist_and_never_go_back,
                audit_log_query_filters_and_pages,
                gateway_checkpoints_and_exports_verify,
                audit_retention_prunes_behind_a_checkpointed_deletion_record,
            );
        }
    };
    (@tests $backend:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::super::ledger_bodies::$name(super::super::$backend().await).await;
            }
        )*
    };
}

mod ledger {
    ledger_conformance!(sqlite);
    ledger_conformance!(postgres);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_unexplained_prune_is_named() {
        super::ledger_bodies::sqlite_unexplained_prune_is_named(super::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_prune_only_through_audit_prune() {
        super::ledger_bodies::postgres_prune_only_through_audit_prune(super::postgres().await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_audit_rows_are_append_only() {
        super::ledger_bodies::postgres_audit_rows_are_append_only(super::postgres().await).await;
    }
}
