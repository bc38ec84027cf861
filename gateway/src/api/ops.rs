//! Operations API (`/v1/…`): find, inspect and replay exchanges; verify the audit chain.

use crate::{
    app::{AppState, AuditNote, Audited, RequestCtx, with_note},
    auth::Principal,
    config::Role,
    error::{ApiError, JSONAPI},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use replay::{ChainReport, ExchangeDetail, ExchangeFilter, ExchangeSummary, JournalStats};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub(crate) fn require_any(p: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if roles.iter().any(|r| p.has(*r)) {
        Ok(())
    } else {
        let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "this needs one of the roles: {}",
            names.join(", ")
        )))
    }
}

pub(crate) fn jsonapi(status: StatusCode, body: &impl Serialize) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::internal(&e))?;
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI));
    Ok(res)
}

/// Query parameters of `GET /v1/exchanges`. Every filter key that is given must match; an
/// unknown key, a repeated key or a bad value is a 400 naming the parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; the handler reads the pairs itself to name bad keys
pub(crate) struct ListParams {
    /// `pending`, `delivered` or `parked`.
    status: Option<String>,
    /// Force key.
    force: Option<String>,
    /// Exchange kind, e.g. `incident.submitted`.
    kind: Option<String>,
    /// Target system, e.g. `athena`.
    target: Option<String>,
    /// Journalled at or after this RFC 3339 date-time.
    from: Option<String>,
    /// Journalled before this RFC 3339 date-time.
    to: Option<String>,
    /// Class of the last failure (`upstream_5xx`, `rejected`, `mapping`, …).
    error_class: Option<String>,
    /// Case reference.
    case_ref: Option<String>,
    /// Submission id (idempotency key); a parent and its replays share it.
    submission_id: Option<String>,
    /// Correlation id.
    correlation_id: Option<String>,
    /// Only replays of this exchange (a UUID).
    parent: Option<String>,
    /// `true`: only replays; `false`: only originals.
    replays: Option<String>,
    /// Page size, 1–1000 (default 50).
    limit: Option<usize>,
    /// Continue after this cursor (from `links.next`).
    cursor: Option<i64>,
}

fn bad_query(param: &str, detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "request.query",
        "Invalid query",
        detail,
    )
    .parameter(param)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Limits `filter` to the forces `p` may see: a client limited to one force gets it by default;
/// a client limited to several must name one. Returns the force searched, if any.
pub(crate) fn scope_force(p: &Principal, filter: &mut ExchangeFilter) -> Result<(), ApiError> {
    match (&filter.force, &p.forces) {
        (Some(f), _) if !p.may_act_for(f) => Err(ApiError::forbidden(format!(
            "these credentials may not see force {f}"
        ))),
        (Some(_), _) | (None, None) => Ok(()),
        (None, Some(allowed)) if allowed.len() == 1 => {
            filter.force = Some(allowed[0].clone());
            Ok(())
        }
        (None, Some(_)) => Err(bad_query(
            "force",
            "force: required for credentials limited to several forces",
        )),
    }
}

/// Builds a filter from `KEY=VALUE` pairs; errors name the key and the rule it broke.
pub(crate) fn filter_from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ExchangeFilter, ApiError> {
    let mut filter = ExchangeFilter::default();
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in pairs {
        let norm = k.replace('-', "_");
        if !seen.insert(norm) {
            return Err(bad_query(k, format!("{k}: given more than once")));
        }
        filter.set(k, v).map_err(|e| bad_query(k, e))?;
    }
    Ok(filter)
}

/// A page of exchanges.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangePage {
    data: Vec<ExchangeResource<ExchangeSummary>>,
    links: PageLinks,
}

/// Paging links.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageLinks {
    /// The next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// An exchange as a JSON:API resource.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangeResource<T> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) attributes: T,
}

/// One exchange.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangeDocument {
    data: ExchangeResource<ExchangeDetail>,
}

/// Lists exchanges, newest first, with filters and paging.
#[utoipa::path(get, path = "/v1/exchanges", tag = "Operations", params(ListParams),
    responses(
        (status = 200, body = ExchangePage, content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn list_exchanges(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let Query(pairs) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.query",
            "Invalid query",
            e.body_text(),
        )
    })?;
    let mut limit = 50usize;
    let mut cursor = None;
    let mut keys = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| bad_query("limit", "limit: must be between 1 and 1000"))?;
            }
            "cursor" => {
                cursor =
                    Some(v.parse::<i64>().map_err(|_| {
                        bad_query("cursor", "cursor: not a cursor from links.next")
                    })?);
            }
            _ => keys.push((k.as_str(), v.as_str())),
        }
    }
    let mut filter = filter_from_pairs(keys.iter().copied())?;
    scope_force(&p, &mut filter)?;
    let force = filter.force.clone();
    let page = st.journal.list(&filter, cursor, limit).await?;
    let next = page.next.map(|c| {
        let mut s = format!("/v1/exchanges?limit={limit}&cursor={c}");
        for (k, v) in &keys {
            if *k != "force" {
                s.push_str(&format!("&{}={}", encode(k), encode(v)));
            }
        }
        if let Some(f) = &force {
            s.push_str(&format!("&force={}", encode(f)));
        }
        s
    });
    let body = ExchangePage {
        data: page
            .items
            .into_iter()
            .map(|s| ExchangeResource {
                kind: "exchange",
                id: s.id.to_string(),
                attributes: s,
            })
            .collect(),
        links: PageLinks { next },
    };
    let count = body.data.len();
    Ok(with_note(
        jsonapi(StatusCode::OK, &body)?,
        AuditNote {
            action: "exchange.search",
            object_type: Some("exchange"),
            force,
            detail: Some(serde_json::json!({ "filter": filter, "results": count })),
            ..Default::default()
        },
    ))
}

pub(crate) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.path",
            "Invalid id",
            "id: not a UUID",
        )
        .parameter("id")
    })
}

pub(crate) async fn visible(
    st: &AppState,
    p: &Principal,
    id: Uuid,
) -> Result<ExchangeDetail, ApiError> {
    match st.journal.get(id).await? {
        // Another force's exchange is reported as absent, not as forbidden.
        Some(d) if p.may_act_for(&d.summary.force) => Ok(d),
        _ => Err(ApiError::not_found(format!("exchange {id} not found"))),
    }
}

/// One exchange with its attempts and replays.
#[utoipa::path(get, path = "/v1/exchanges/{id}", tag = "Operations",
    params(("id" = String, Path, description = "Exchange id")),
    responses(
        (status = 200, body = ExchangeDocument, content_type = "application/vnd.api+json"),
        (status = 404, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn get_exchange(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let id = parse_id(&id)?;
    let d = visible(&st, &p, id).await?;
    let force = d.summary.force.clone();
    let body = ExchangeDocument {
        data: ExchangeResource {
            kind: "exchange",
            id: id.to_string(),
            attributes: d,
        },
    };
    Ok(with_note(
        jsonapi(StatusCode::OK, &body)?,
        AuditNote {
            action: "exchange.view",
            object_type: Some("exchange"),
            object_id: Some(id.to_string()),
            force: Some(force),
            detail: None,
        },
    ))
}

/// The replay created.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayDocument {
    data: ExchangeResource<ReplayAttributes>,
}

/// Replay attributes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplayAttributes {
    parent_id: String,
    status: &'static str,
}

/// Options of a replay of one exchange. The body is optional: none replays through the
/// current mapping.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Map the replay through this version of its target mapping spec
    /// (`nmpp-to-athena@2.0.0`) instead of the current one; it is stored on the child and its
    /// attempts record it. A version that is not loaded, or that makes another kind of payload,
    /// is a 400 listing those available.
    #[serde(default)]
    mapping_version: Option<String>,
    /// Replay nothing: answer 200 with the unified diff of the target payload the exchange sent
    /// against the one `mappingVersion` (default: the current version) makes.
    #[serde(default)]
    dry_run: bool,
}

/// What replaying one exchange through a mapping version would change in its target payload.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayPlanDocument {
    data: ExchangeResource<crate::remap::MappingDiff>,
}

/// Re-executes a parked exchange as a new child exchange (same payload and idempotency key);
/// the parent and its attempts stay as they were. With `mappingVersion` the child is mapped
/// through that version; with `dryRun` nothing is replayed and the answer is the diff of old
/// and new target payloads.
#[utoipa::path(post, path = "/v1/exchanges/{id}/replay", tag = "Operations",
    params(("id" = String, Path, description = "Id of a parked exchange")),
    request_body(content = Option<ReplayRequest>, content_type = "application/json",
        description = "Optional: a mapping version, and whether only to show the diff"),
    responses(
        (status = 200, description = "Dry run: the diff of old and new target payloads", body = ReplayPlanDocument,
            content_type = "application/vnd.api+json"),
        (status = 202, description = "Child exchange created and queued", body = ReplayDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not parked, or already replayed", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn replay_exchange(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator])?;
    let id = parse_id(&id)?;
    let req: ReplayRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        super::jobs::body(&bytes)?
    };
    let d = visible(&st, &p, id).await?;
    let mappings = &st.pipeline.mappings_of(&d.summary.force);
    let mapping_version = match &req.mapping_version {
        Some(v) => {
            let name = crate::remap::check(mappings, v).map_err(|why| {
                super::jobs::bad_body("mappingVersion", "enum", format!("mappingVersion: {why}"))
            })?;
            crate::remap::fits(d.mapping_version.as_deref(), &name).map_err(|why| {
                super::jobs::bad_body(
                    "mappingVersion",
                    "applicable",
                    format!(
                        "mappingVersion: exchange {id} cannot be replayed through {name}: {why}"
                    ),
                )
            })?;
            Some(name)
        }
        None => None,
    };
    if req.dry_run {
        let to = match (&mapping_version, &d.mapping_version) {
            (Some(to), _) => to.clone(),
            (None, Some(sent)) => mappings.spec_version(sent.split('@').next().unwrap_or(sent)),
            (None, None) => {
                return Err(super::jobs::bad_body(
                    "mappingVersion",
                    "required",
                    format!(
                        "mappingVersion: exchange {id} never sent a mapped payload; name the \
                         version to compare with (available: {})",
                        crate::remap::replayable(mappings).join(", ")
                    ),
                ));
            }
        };
        let diff = crate::remap::diff_one(st.journal.as_ref(), mappings, id, &to).await?;
        let changed = diff.changed;
        let body = ReplayPlanDocument {
            data: ExchangeResource {
                kind: "replay-plan",
                id: id.to_string(),
                attributes: diff,
            },
        };
        return Ok(with_note(
            jsonapi(StatusCode::OK, &body)?,
            AuditNote {
                action: "exchange.replay.dry_run",
                object_type: Some("exchange"),
                object_id: Some(id.to_string()),
                force: Some(d.summary.force.clone()),
                detail: Some(serde_json::json!({ "mappingVersion": to, "changed": changed })),
            },
        ));
    }
    let mut ev = ctx.audit(Some(&p), "exchange.replay", "success");
    ev.force = Some(d.summary.force.clone());
    let options = replay::ReplayOptions {
        mapping_version,
        ..replay::ReplayOptions::default()
    };
    let child = st.journal.replay_with(id, options, ev).await?;
    st.work_ready.notify_one();
    let body = ReplayDocument {
        data: ExchangeResource {
            kind: "exchange",
            id: child.to_string(),
            attributes: ReplayAttributes {
                parent_id: id.to_string(),
                status: "pending",
            },
        },
    };
    let mut res = jsonapi(StatusCode::ACCEPTED, &body)?;
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/exchanges/{child}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.extensions_mut().insert(Audited);
    Ok(res)
}

async fn park_or_unpark(
    st: AppState,
    p: Principal,
    ctx: RequestCtx,
    id: String,
    park: bool,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator])?;
    let id = parse_id(&id)?;
    let d = visible(&st, &p, id).await?;
    let action = if park {
        "exchange.park"
    } else {
        "exchange.unpark"
    };
    let mut ev = ctx.audit(Some(&p), action, "success");
    ev.force = Some(d.summary.force.clone());
    ev.object_type = Some("exchange".into());
    ev.object_id = Some(id.to_string());
    let now = crate::app::now_millis();
    if park {
        st.journal.park(id, now, ev).await?;
    } else {
        st.journal.unpark(id, now, ev).await?;
        st.work_ready.notify_one();
    }
    let d = visible(&st, &p, id).await?;
    let mut res = jsonapi(
        StatusCode::OK,
        &ExchangeDocument {
            data: ExchangeResource {
                kind: "exchange",
                id: id.to_string(),
                attributes: d,
            },
        },
    )?;
    res.extensions_mut().insert(Audited);
    Ok(res)
}

/// Parks a pending exchange: no more delivery attempts until an operator unparks or replays it.
/// Refused (409) while a delivery is in flight or when it is not pending.
#[utoipa::path(post, path = "/v1/exchanges/{id}/park", tag = "Operations",
    params(("id" = String, Path, description = "Id of a pending exchange")),
    responses(
        (status = 200, description = "Parked; the exchange as it is now", body = ExchangeDocument,
            content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not pending, or a delivery is in flight", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn park_exchange(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    park_or_unpark(st, p, ctx, id, true).await
}

/// Puts a parked exchange back to pending, due now (the same exchange is delivered again, with
/// its attempts so far kept). Refused (409) when it is not parked or has a live replay.
#[utoipa::path(post, path = "/v1/exchanges/{id}/unpark", tag = "Operations",
    params(("id" = String, Path, description = "Id of a parked exchange")),
    responses(
        (status = 200, description = "Pending again; the exchange as it is now", body = ExchangeDocument,
            content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not parked, or it has a live replay", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn unpark_exchange(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    park_or_unpark(st, p, ctx, id, false).await
}

/// Journal statistics.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsDocument {
    data: ExchangeResource<StatsAttributes>,
}

/// Counts by status, force and kind; oldest pending and parked; running replay jobs; holds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsAttributes {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    stats: JournalStats,
}

/// Journal statistics: exchanges by status (and by force, kind and status), the oldest pending
/// and parked exchange, running replay jobs, legal holds and audit records. Credentials limited
/// to some forces see only those forces' counts.
#[utoipa::path(get, path = "/v1/journal/stats", tag = "Operations",
    responses(
        (status = 200, body = StatsDocument, content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn journal_stats(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let mut stats = st.journal.stats().await?;
    if p.forces.is_some() {
        stats.groups.retain(|g| p.may_act_for(&g.force));
        let sum = |s: replay::Status| {
            stats
                .groups
                .iter()
                .filter(|g| g.status == s)
                .map(|g| g.count)
                .sum::<u64>()
        };
        stats.pending = sum(replay::Status::Pending);
        stats.delivered = sum(replay::Status::Delivered);
        stats.parked = sum(replay::Status::Parked);
        // Journal-wide times would tell of other forces' exchanges.
        stats.oldest_pending = None;
        stats.oldest_parked = None;
    }
    Ok(with_note(
        jsonapi(
            StatusCode::OK,
            &StatsDocument {
                data: ExchangeResource {
                    kind: "journal-stats",
                    id: "journal".into(),
                    attributes: StatsAttributes { stats },
                },
            },
        )?,
        AuditNote {
            action: "journal.stats",
            object_type: Some("journal"),
            ..Default::default()
        },
    ))
}

/// Checks the audit hash chain from the first record to the last.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "Audit",
    responses(
        (status = 200, description = "The chain is intact", body = ChainReportDoc),
        (status = 409, description = "The chain is broken; names the first bad record", body = ChainReportDoc)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn verify_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Auditor])?;
    let report = crate::audit::verify_chain(st.journal.as_ref()).await?;
    let status = if report.first_bad.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok(with_note(
        (status, Json(ChainReportDoc::from(&report))),
        AuditNote {
            action: "audit.verify",
            object_type: Some("audit"),
            detail: Some(
                serde_json::json!({ "records": report.records, "intact": report.first_bad.is_none() }),
            ),
            ..Default::default()
        },
    ))
}

/// Audit chain report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChainReportDoc {
    /// Records checked.
    records: u64,
    /// Whether every record checked out.
    intact: bool,
    /// Sequence number of the first bad record.
    first_bad_seq: Option<u64>,
    /// What is wrong with it.
    reason: Option<String>,
}

impl From<&ChainReport> for ChainReportDoc {
    fn from(r: &ChainReport) -> Self {
        Self {
            records: r.records,
            intact: r.first_bad.is_none(),
            first_bad_seq: r.first_bad.as_ref().map(|f| f.seq),
            reason: r.first_bad.as_ref().map(|f| f.reason.clone()),
        }
    }
}
