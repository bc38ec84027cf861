//! Seeding a journal fast, straight through the journal API rather than 100,000 HTTP posts, for
//! the bulk replay suite and its benchmark.

use replay::{AuditEvent, Direction, Journal, NewExchange};
use std::sync::Arc;
use uuid::Uuid;

/// One seeded exchange.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Exchange id.
    pub id: Uuid,
    /// Its submission id (the idempotency key sent downstream).
    pub submission_id: String,
}

fn event(action: &str, id: Uuid, force: &str) -> AuditEvent {
    AuditEvent {
        time: gateway::app::now_millis(),
        actor: "nmpp-tests:seed".into(),
        role: "operator".into(),
        force: Some(force.into()),
        action: action.into(),
        object_type: Some("exchange".into()),
        object_id: Some(id.to_string()),
        result: "success".into(),
        source_ip: None,
        user_agent: None,
        correlation_id: None,
        event_uid: Uuid::now_v7(),
        detail: None,
    }
}

/// Journals `n` incident submissions for `force` (the published skeleton SDM example, each with
/// its own submission id, so each maps and delivers like a real one) and parks each one, as an
/// operator would; `workers` tasks at once so group commit batches the writes. No gateway may be
/// delivering from this journal meanwhile (it would claim them before they are parked).
pub async fn parked_submissions(
    journal: Arc<dyn Journal>,
    force: &str,
    target: &str,
    n: usize,
    workers: usize,
) -> Vec<Seeded> {
    let template: serde_json::Value =
        serde_json::from_str(crate::sdm::SKELETON).expect("the committed example is JSON");
    let workers = workers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let journal = journal.clone();
        let template = template.clone();
        let force = force.to_owned();
        let target = target.to_owned();
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in (w..n).step_by(workers) {
                let submission_id = Uuid::new_v4().to_string();
                let mut doc = template.clone();
                crate::sdm::set_submission_id(&mut doc, &submission_id);
                let id = Uuid::now_v7();
                let ex = NewExchange {
                    id,
                    force: force.clone(),
                    kind: "incident.submitted".into(),
                    direction: Direction::Inbound,
                    source_system: "ihub".into(),
                    target_system: target.clone(),
                    api_version: "ihub-sapi/v1".into(),
                    model_version: "nmpp/1".into(),
                    idempotency_key: submission_id.clone(),
                    correlation_id: format!("seed-{i}"),
                    case_ref: Some(format!("SEED-{}", i % 1000)),
                    payload_type: "application/vnd.api+json".into(),
                    payload: serde_json::to_vec(&doc).expect("serialises"),
                    response: b"{}".to_vec(),
                };
                journal
                    .accept(ex, event("incident.create", id, &force))
                    .await
                    .expect("seeding: accept");
                journal
                    .park(
                        id,
                        gateway::app::now_millis(),
                        event("exchange.park", id, &force),
                    )
                    .await
                    .expect("seeding: park");
                out.push(Seeded { id, submission_id });
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("a seeding task panicked"));
    }
    all
}
