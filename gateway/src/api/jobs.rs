//! Operations API for bulk work: replay jobs (replay by filter, with dry-run) and legal holds.

use super::ops::{ExchangeResource, jsonapi, parse_id, require_any, scope_force, visible};
use crate::{
    app::{AppState, AuditNote, Audited, RequestCtx, with_note},
    auth::Principal,
    config::Role,
    error::ApiError,
    jobs::DryRun,
};
use axum::{
    Extension,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use replay::{HoldTarget, JournalError, LegalHold, NewReplayJob, ReplayJob, ReplayOptions};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// Parses a JSON body; a syntax error or a field of the wrong type or name is a 400 naming the
/// field (`source.pointer`).
pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        let field = if path == "." { "body".into() } else { path };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.body",
            "Invalid request body",
            format!("{field}: {}", e.inner()),
        )
        .at(pointer, field, "schema")
    })
}

pub(super) fn bad_body(field: &str, rule: &str, detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "request.body",
        "Invalid request body",
        detail,
    )
    .at(format!("/{}", field.replace('.', "/")), field, rule)
}

fn job_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("replay job {id} not found"))
}

/// A request to replay every parked exchange matching a filter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReplayJobRequest {
    /// Filter keys and values, as for `GET /v1/exchanges` (`{"status": "parked", "force":
    /// "kent"}`); at least one. Only parked exchanges are replayed; the others are counted as
    /// skipped.
    filter: BTreeMap<String, String>,
    /// Only count and sample what would be replayed; create nothing.
    #[serde(default)]
    dry_run: bool,
    /// At most this many replays created per second, counted across every node that works the
    /// job (default: as fast as the journal goes).
    #[serde(default)]
    rate_per_sec: Option<u32>,
    /// Replay only the deliveries to this target system (e.g. `athena`).
    #[serde(default)]
    target: Option<String>,
    /// How many matching exchanges a dry run shows (default 10, at most 100).
    #[serde(default)]
    sample: Option<usize>,
    /// Map every replay through this version of its target mapping spec
    /// (`nmpp-to-athena@2.0.0`) instead of the current one. With `dryRun`, the answer shows for
    /// each exchange of the sample the unified diff of the payload it sent against the one this
    /// version makes. A version that is not loaded is a 400 listing those that are.
    #[serde(default)]
    mapping_version: Option<String>,
}

/// A replay job as a JSON:API document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayJobDocument {
    data: ExchangeResource<JobAttributes>,
}

/// A replay job: its filter, state and progress (`planned`, `replayed`, `skipped`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobAttributes {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    job: ReplayJob,
}

/// Replay jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayJobList {
    data: Vec<ExchangeResource<JobAttributes>>,
}

/// What a replay job would do.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DryRunDocument {
    data: ExchangeResource<DryRun>,
}

fn job_resource(job: ReplayJob) -> ExchangeResource<JobAttributes> {
    ExchangeResource {
        kind: "replay-job",
        id: job.id.to_string(),
        attributes: JobAttributes { job },
    }
}

fn may_see_job(p: &Principal, job: &ReplayJob) -> bool {
    match (&p.forces, &job.filter.force) {
        (None, _) => true,
        (Some(_), Some(f)) => p.may_act_for(f),
        (Some(_), None) => false,
    }
}

/// Replays every parked exchange matching a filter, as a job the gateway works in the
/// background (at `ratePerSec`, resumable by any node), or with `dryRun` counts and samples
/// what it would replay. Each replay is a child of its parent, sent with the parent's
/// idempotency key, mapped through `mappingVersion` when given (with `dryRun`: the diff of old
/// and new target payloads of the sample, before anything is sent).
#[utoipa::path(post, path = "/v1/replay-jobs", tag = "Operations",
    request_body(content = ReplayJobRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Dry run: the exact count and a sample", body = DryRunDocument,
            content_type = "application/vnd.api+json"),
        (status = 201, description = "Job created; follow it at `Location`", body = ReplayJobDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn create_replay_job(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator])?;
    let req: ReplayJobRequest = body(&bytes)?;
    if req.filter.is_empty() {
        return Err(bad_body(
            "filter",
            "required",
            "filter: give at least one key (e.g. {\"status\": \"parked\"})",
        ));
    }
    let mut filter = replay::ExchangeFilter::default();
    for (k, v) in &req.filter {
        filter
            .set(k, v)
            .map_err(|e| bad_body(&format!("filter.{k}"), "filter", e))?;
    }
    scope_force(&p, &mut filter)?;
    if req.rate_per_sec == Some(0) {
        return Err(bad_body(
            "ratePerSec",
            "minimum",
            "ratePerSec: must be at least 1",
        ));
    }
    if let Some(t) = &req.target {
        let known: std::collections::BTreeSet<&str> = st
            .pipeline
            .forces()
            .map(|(_, f)| f.records.name())
            .collect();
        if !known.contains(t.as_str()) {
            return Err(bad_body(
                "target",
                "enum",
                format!(
                    "target: no configured system is called {t:?} (configured: {})",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        match &filter.target {
            Some(ft) if ft != t => {
                return Err(bad_body(
                    "target",
                    "consistent",
                    format!("target: {t:?} differs from the filter's target {ft:?}"),
                ));
            }
            _ => filter.target = Some(t.clone()),
        }
    }
    // A filter on one force checks versions against that force's own specs too.
    let mappings = match &filter.force {
        Some(force) => st.pipeline.mappings_of(force),
        None => st.pipeline.mappings(),
    };
    let mapping_version =
        match &req.mapping_version {
            Some(v) => Some(crate::remap::check(&mappings, v).map_err(|why| {
                bad_body("mappingVersion", "enum", format!("mappingVersion: {why}"))
            })?),
            None => None,
        };
    if let Some(name) = &mapping_version {
        crate::remap::narrow(&mut filter, name).map_err(|why| {
            bad_body(
                "mappingVersion",
                "consistent",
                format!("mappingVersion: {why}"),
            )
        })?;
    }
    if req.dry_run {
        let mut plan = crate::jobs::dry_run(
            st.journal.as_ref(),
            &filter,
            req.sample.unwrap_or(10).min(100),
        )
        .await?;
        if let Some(to) = &mapping_version {
            plan.diffs =
                crate::remap::diff_sample(st.journal.as_ref(), &mappings, &plan.sample, to).await?;
            plan.mapping_version = Some(to.clone());
        }
        let body = DryRunDocument {
            data: ExchangeResource {
                kind: "replay-plan",
                id: "dry-run".into(),
                attributes: plan,
            },
        };
        let force = filter.force.clone();
        return Ok(with_note(
            jsonapi(StatusCode::OK, &body)?,
            AuditNote {
                action: "exchange.replay_job.dry_run",
                object_type: Some("replay_job"),
                force,
                detail: Some(serde_json::json!({ "filter": filter,
                    "matching": body.data.attributes.matching,
                    "mappingVersion": body.data.attributes.mapping_version })),
                ..Default::default()
            },
        ));
    }
    let mut ev = ctx.audit(Some(&p), "exchange.replay_job.create", "success");
    ev.force = filter.force.clone();
    let job = st
        .journal
        .create_replay_job(
            NewReplayJob {
                filter,
                options: ReplayOptions {
                    target: req.target,
                    mapping_version,
                    rate_per_sec: req.rate_per_sec,
                },
                created_by: p.key.clone(),
            },
            ev,
        )
        .await?;
    let id = job.id;
    let mut res = jsonapi(
        StatusCode::CREATED,
        &ReplayJobDocument {
            data: job_resource(job),
        },
    )?;
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/replay-jobs/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.extensions_mut().insert(Audited);
    Ok(res)
}

/// The most recent replay jobs (at most 100), newest first.
#[utoipa::path(get, path = "/v1/replay-jobs", tag = "Operations",
    responses(
        (status = 200, body = ReplayJobList, content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn list_replay_jobs(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let jobs = st.journal.replay_jobs(100).await?;
    let data: Vec<_> = jobs
        .into_iter()
        .filter(|j| may_see_job(&p, j))
        .map(job_resource)
        .collect();
    let n = data.len();
    Ok(with_note(
        jsonapi(StatusCode::OK, &ReplayJobList { data })?,
        AuditNote {
            action: "exchange.replay_job.list",
            object_type: Some("replay_job"),
            detail: Some(serde_json::json!({ "results": n })),
            ..Default::default()
        },
    ))
}

async fn visible_job(st: &AppState, p: &Principal, id: &str) -> Result<ReplayJob, ApiError> {
    let id = parse_id(id)?;
    match st.journal.replay_job(id).await? {
        Some(j) if may_see_job(p, &j) => Ok(j),
        _ => Err(job_not_found(id)),
    }
}

/// One replay job: state and progress (`planned` is the exact count when it was created;
/// `replayed + skipped` of it are done).
#[utoipa::path(get, path = "/v1/replay-jobs/{id}", tag = "Operations",
    params(("id" = String, Path, description = "Replay job id")),
    responses(
        (status = 200, body = ReplayJobDocument, content_type = "application/vnd.api+json"),
        (status = 404, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn get_replay_job(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let job = visible_job(&st, &p, &id).await?;
    let id = job.id;
    Ok(with_note(
        jsonapi(
            StatusCode::OK,
            &ReplayJobDocument {
                data: job_resource(job),
            },
        )?,
        AuditNote {
            action: "exchange.replay_job.view",
            object_type: Some("replay_job"),
            object_id: Some(id.to_string()),
            ..Default::default()
        },
    ))
}

async fn set_cancelled(
    st: AppState,
    p: Principal,
    ctx: RequestCtx,
    id: String,
    cancel: bool,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator])?;
    let job = visible_job(&st, &p, &id).await?;
    let action = if cancel {
        "exchange.replay_job.cancel"
    } else {
        "exchange.replay_job.resume"
    };
    let mut ev = ctx.audit(Some(&p), action, "success");
    ev.force = job.filter.force.clone();
    let job = st
        .journal
        .set_replay_job_cancelled(job.id, cancel, ev)
        .await
        .map_err(|e| match e {
            JournalError::NotFound(_) => job_not_found(job.id),
            other => other.into(),
        })?;
    let mut res = jsonapi(
        StatusCode::OK,
        &ReplayJobDocument {
            data: job_resource(job),
        },
    )?;
    res.extensions_mut().insert(Audited);
    Ok(res)
}

/// Cancels a running replay job: no more replays are created (those created stay queued).
/// 409 unless it is running.
#[utoipa::path(post, path = "/v1/replay-jobs/{id}/cancel", tag = "Operations",
    params(("id" = String, Path, description = "Replay job id")),
    responses(
        (status = 200, body = ReplayJobDocument, content_type = "application/vnd.api+json"),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not running", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn cancel_replay_job(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_cancelled(st, p, ctx, id, true).await
}

/// Resumes a cancelled replay job where it stopped; no exchange is replayed twice.
/// 409 unless it is cancelled.
#[utoipa::path(post, path = "/v1/replay-jobs/{id}/resume", tag = "Operations",
    params(("id" = String, Path, description = "Replay job id")),
    responses(
        (status = 200, body = ReplayJobDocument, content_type = "application/vnd.api+json"),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not cancelled", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn resume_replay_job(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_cancelled(st, p, ctx, id, false).await
}

/// A legal hold to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HoldRequest {
    /// `{"type": "exchange", "id": "…"}` (the exchange and all its replays) or
    /// `{"type": "case", "force": "kent", "caseRef": "…"}`.
    #[schema(value_type = Object)]
    target: HoldTarget,
    /// Why: a reference to the legal matter (never personal data), 1–200 characters.
    reason: String,
}

/// A legal hold as a JSON:API document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HoldDocument {
    data: ExchangeResource<HoldAttributes>,
}

/// Legal holds in force.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HoldList {
    data: Vec<ExchangeResource<HoldAttributes>>,
}

/// A legal hold: what it covers, why, who placed it and when.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HoldAttributes {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    hold: LegalHold,
}

fn hold_resource(hold: LegalHold) -> ExchangeResource<HoldAttributes> {
    ExchangeResource {
        kind: "legal-hold",
        id: hold.id.to_string(),
        attributes: HoldAttributes { hold },
    }
}

async fn hold_force(st: &AppState, p: &Principal, t: &HoldTarget) -> Result<String, ApiError> {
    match t {
        HoldTarget::Exchange { id } => Ok(visible(st, p, *id)
            .await
            .map_err(|_| {
                bad_body(
                    "target.id",
                    "exists",
                    format!("target.id: exchange {id} not found"),
                )
            })?
            .summary
            .force),
        HoldTarget::Case { force, .. } => {
            if !st.config.forces.contains_key(force) {
                return Err(bad_body(
                    "target.force",
                    "enum",
                    format!("target.force: unknown force {force:?}"),
                ));
            }
            if !p.may_act_for(force) {
                return Err(ApiError::forbidden(format!(
                    "these credentials may not act for force {force}"
                )));
            }
            Ok(force.clone())
        }
    }
}

/// Places a legal hold: while it is in force, retention deletes nothing it covers.
#[utoipa::path(post, path = "/v1/legal-holds", tag = "Operations",
    request_body(content = HoldRequest, content_type = "application/json"),
    responses(
        (status = 201, body = HoldDocument, content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn place_hold(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let req: HoldRequest = body(&bytes)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(bad_body(
            "reason",
            "length",
            "reason: must be 1 to 200 characters",
        ));
    }
    let force = hold_force(&st, &p, &req.target).await?;
    let mut ev = ctx.audit(Some(&p), "legal_hold.place", "success");
    ev.force = Some(force);
    let hold = st.journal.place_hold(req.target, reason, ev).await?;
    let id = hold.id;
    let mut res = jsonapi(
        StatusCode::CREATED,
        &HoldDocument {
            data: hold_resource(hold),
        },
    )?;
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/legal-holds/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.extensions_mut().insert(Audited);
    Ok(res)
}

/// Legal holds in force.
#[utoipa::path(get, path = "/v1/legal-holds", tag = "Operations",
    responses(
        (status = 200, body = HoldList, content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn list_holds(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let holds = st.journal.holds().await?;
    let mut data = Vec::new();
    for h in holds {
        let ok = match &h.target {
            HoldTarget::Case { force, .. } => p.may_act_for(force),
            HoldTarget::Exchange { id } => {
                p.forces.is_none() || visible(&st, &p, *id).await.is_ok()
            }
        };
        if ok {
            data.push(hold_resource(h));
        }
    }
    let n = data.len();
    Ok(with_note(
        jsonapi(StatusCode::OK, &HoldList { data })?,
        AuditNote {
            action: "legal_hold.list",
            object_type: Some("legal_hold"),
            detail: Some(serde_json::json!({ "results": n })),
            ..Default::default()
        },
    ))
}

/// Releases a legal hold; retention may then delete what it covered.
#[utoipa::path(delete, path = "/v1/legal-holds/{id}", tag = "Operations",
    params(("id" = String, Path, description = "Legal hold id")),
    responses(
        (status = 204, description = "Released"),
        (status = 403, body = crate::error::ErrorDocument),
        (status = 404, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn release_hold(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let id = parse_id(&id)?;
    let Some(hold) = st.journal.holds().await?.into_iter().find(|h| h.id == id) else {
        return Err(ApiError::not_found(format!("legal hold {id} not found")));
    };
    let force = hold_force(&st, &p, &hold.target)
        .await
        .map_err(|_| ApiError::not_found(format!("legal hold {id} not found")))?;
    let mut ev = ctx.audit(Some(&p), "legal_hold.release", "success");
    ev.force = Some(force);
    st.journal.release_hold(id, ev).await.map_err(|e| match e {
        JournalError::NotFound(_) => ApiError::not_found(format!("legal hold {id} not found")),
        other => other.into(),
    })?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.extensions_mut().insert(Audited);
    Ok(res)
}
