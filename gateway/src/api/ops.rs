//! Operations API (`/v1/…`): find, inspect and replay exchanges; verify the audit chain.

use crate::{
    app::{AppState, AuditNote, Audited, RequestCtx, with_note},
    auth::Principal,
    config::Role,
    error::{ApiError, JSONAPI},
};
use axum::{
    Extension, Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use replay::{ChainReport, ExchangeDetail, ExchangeFilter, ExchangeSummary, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

fn require_any(p: &Principal, roles: &[Role]) -> Result<(), ApiError> {
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

fn jsonapi(status: StatusCode, body: &impl Serialize) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::internal(&e))?;
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI));
    Ok(res)
}

/// Query parameters of `GET /v1/exchanges`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// `pending`, `delivered` or `parked`.
    status: Option<String>,
    /// Force key.
    force: Option<String>,
    /// Exchange kind, e.g. `incident.submitted`.
    kind: Option<String>,
    /// Page size, 1–1000 (default 50).
    limit: Option<usize>,
    /// Continue after this cursor (from `links.next`).
    cursor: Option<i64>,
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
    kind: &'static str,
    id: String,
    attributes: T,
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
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let Query(q) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.query",
            "Invalid query",
            e.body_text(),
        )
    })?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "request.query", "Invalid query", e)
                .parameter("status")
        })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.query",
            "Invalid query",
            "limit: must be between 1 and 1000",
        )
        .parameter("limit"));
    }
    let force = match (&q.force, &p.forces) {
        (Some(f), _) if !p.may_act_for(f) => {
            return Err(ApiError::forbidden(format!(
                "these credentials may not see force {f}"
            )));
        }
        (Some(f), _) => Some(f.clone()),
        (None, None) => None,
        (None, Some(allowed)) if allowed.len() == 1 => Some(allowed[0].clone()),
        (None, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.query",
                "Invalid query",
                "force: required for credentials limited to several forces",
            )
            .parameter("force"));
        }
    };
    let filter = ExchangeFilter {
        status,
        force: force.clone(),
        kind: q.kind.clone(),
        ..Default::default()
    };
    let page = st.journal.list(&filter, q.cursor, limit).await?;
    let next = page.next.map(|c| {
        let mut s = format!("/v1/exchanges?limit={limit}&cursor={c}");
        if let Some(v) = &q.status {
            s.push_str(&format!("&status={v}"));
        }
        if let Some(v) = &force {
            s.push_str(&format!("&force={v}"));
        }
        if let Some(v) = &q.kind {
            s.push_str(&format!("&kind={v}"));
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
            detail: Some(serde_json::json!({
                "filter": { "status": q.status, "kind": q.kind }, "results": count })),
            ..Default::default()
        },
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
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

async fn visible(st: &AppState, p: &Principal, id: Uuid) -> Result<ExchangeDetail, ApiError> {
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

/// Re-executes a parked exchange as a new child exchange (same payload and idempotency key);
/// the parent and its attempts stay as they were.
#[utoipa::path(post, path = "/v1/exchanges/{id}/replay", tag = "Operations",
    params(("id" = String, Path, description = "Id of a parked exchange")),
    responses(
        (status = 202, description = "Child exchange created and queued", body = ReplayDocument,
            content_type = "application/vnd.api+json"),
        (status = 404, body = crate::error::ErrorDocument),
        (status = 409, description = "Not parked, or already replayed", body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn replay_exchange(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator])?;
    let id = parse_id(&id)?;
    let d = visible(&st, &p, id).await?;
    let mut ev = ctx.audit(Some(&p), "exchange.replay", "success");
    ev.force = Some(d.summary.force.clone());
    let child = st.journal.replay(id, ev).await?;
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
