//! Audit and log-management API (`/v1/audit/…`, `/v1/logs/…`): the auditor export, signed
//! checkpoints, and paged queries over the audit ledger and the integration log (exchanges).
//!
//! Every call is audited by the gatekeeper. Searches record the SHA-256 of their criteria, not
//! the criteria themselves (a correlation id or actor name can be sensitive); exports record
//! their format, filters and what was written.

use crate::{
    app::{AppState, AuditNote, with_note},
    auth::Principal,
    config::Role,
    error::{ApiError, JSONAPI},
};
use axum::{
    Extension,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use replay::ledger::{ExportFilter, RecordFormat};
use replay::{AuditQuery, ExchangeFilter, Status, StoredCheckpoint};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::{IntoParams, ToSchema};

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

fn bad_query(param: &str, detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "request.query",
        "Invalid query",
        detail,
    )
    .parameter(param)
}

fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.query",
            "Invalid query",
            e.body_text(),
        )
    })
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            bad_query(
                name,
                format!("{name}: not an RFC 3339 date-time (e.g. 2026-03-01T09:00:00Z)"),
            )
        })
    })
    .transpose()
}

fn limit_param(v: Option<usize>) -> Result<usize, ApiError> {
    let limit = v.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(bad_query("limit", "limit: must be between 1 and 1000"))
    }
}

/// The force a caller limited to some forces may query: the one asked for if allowed, their
/// only force when none is asked for; several allowed forces need an explicit choice.
fn scoped_force(p: &Principal, asked: Option<&String>) -> Result<Option<String>, ApiError> {
    match (asked, &p.forces) {
        (Some(f), _) if !p.may_act_for(f) => Err(ApiError::forbidden(format!(
            "these credentials may not see force {f}"
        ))),
        (Some(f), _) => Ok(Some(f.clone())),
        (None, None) => Ok(None),
        (None, Some(allowed)) if allowed.len() == 1 => Ok(Some(allowed[0].clone())),
        (None, Some(_)) => Err(bad_query(
            "force",
            "force: required for credentials limited to several forces",
        )),
    }
}

/// SHA-256 (hex) of the canonical JSON of search criteria, for the audit record.
fn criteria_hash(criteria: &impl Serialize) -> String {
    // serde_json maps keep keys sorted, so equal criteria serialise to equal bytes.
    let bytes = serde_json::to_vec(criteria).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

// --- export ------------------------------------------------------------------------------------

/// Query parameters of `GET /v1/audit/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportParams {
    /// `csv` (default) or `jsonl`.
    format: Option<String>,
    /// Only records at or after this time (RFC 3339).
    from: Option<String>,
    /// Only records before this time (RFC 3339).
    to: Option<String>,
    /// Only records of this force.
    force: Option<String>,
    /// Only records by this actor.
    actor: Option<String>,
}

/// An auditor bundle: every file of the directory `nmpp-gateway audit export` would write.
/// Write each file under its name into an empty directory and run
/// `nmpp-gateway audit verify DIR`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BundleDocument {
    data: BundleResource,
}

/// The bundle resource.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BundleResource {
    /// `auditBundle`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Export id.
    id: String,
    attributes: BundleAttributes,
}

/// The bundle's files and manifest.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BundleAttributes {
    /// `manifest.json`, parsed.
    #[schema(value_type = Object)]
    manifest: serde_json::Value,
    /// File name → content (UTF-8 text): `records.csv` or `records.jsonl`, `checkpoints.txt`,
    /// `public-key.txt`, `proofs.jsonl`, `manifest.json`, `manifest.sig`.
    files: BTreeMap<String, String>,
}

/// Exports the audit ledger as an auditor bundle (records with sequence numbers and leaf
/// hashes, signed checkpoints, the public key, proofs, a signed manifest). Everything unless
/// filtered; a checkpoint is signed first so the bundle covers the ledger up to now. Role
/// `auditor`; credentials limited to some forces must filter by one of them. Audited.
#[utoipa::path(get, path = "/v1/audit/export", tag = "Audit", params(ExportParams),
    responses(
        (status = 200, body = BundleDocument, content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn export(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Auditor])?;
    let q = query(params)?;
    let format = match q.format.as_deref().unwrap_or("csv") {
        "csv" => RecordFormat::Csv,
        "jsonl" => RecordFormat::Jsonl,
        _ => return Err(bad_query("format", "format: expected csv or jsonl")),
    };
    let force = match &q.force {
        Some(_) => scoped_force(&p, q.force.as_ref())?,
        None if p.forces.is_some() => {
            return Err(bad_query(
                "force",
                "force: required for credentials limited to some forces",
            ));
        }
        None => None,
    };
    let filter = ExportFilter {
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
        force,
        actor: q.actor.clone(),
    };
    let id = uuid::Uuid::now_v7();
    let dir = std::env::temp_dir().join(format!("nmpp-audit-export-{id}"));
    let result = st
        .ledger
        .export(&dir, format, filter.clone(), &p.key, None)
        .await;
    let files = match &result {
        Ok(_) => read_bundle(&dir),
        Err(_) => Ok(BTreeMap::new()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let note = |detail| AuditNote {
        action: "audit.export",
        object_type: Some("audit_bundle"),
        object_id: Some(id.to_string()),
        force: filter.force.clone(),
        detail: Some(detail),
    };
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "audit export failed");
            let res = ApiError::internal(&"the audit export failed").into_response();
            return Ok(with_note(
                res,
                note(crate::cli::export_detail(format, &filter, None)),
            ));
        }
    };
    let files = files.map_err(|e| ApiError::internal(&e))?;
    let detail = crate::cli::export_detail(format, &filter, Some(&done));
    let manifest =
        serde_json::to_value(&done.summary.manifest).map_err(|e| ApiError::internal(&e))?;
    let body = BundleDocument {
        data: BundleResource {
            kind: "auditBundle",
            id: id.to_string(),
            attributes: BundleAttributes { manifest, files },
        },
    };
    Ok(with_note(jsonapi(StatusCode::OK, &body)?, note(detail)))
}

fn read_bundle(dir: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        files.insert(name, text);
    }
    Ok(files)
}

// --- checkpoints --------------------------------------------------------------------------------

/// The signed checkpoints and the key to verify them with.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointsDocument {
    data: Vec<CheckpointResource>,
    meta: CheckpointsMeta,
}

/// One checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointResource {
    /// `checkpoint`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The tree size.
    id: String,
    attributes: StoredCheckpoint,
}

/// About the checkpoints.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckpointsMeta {
    /// The ledger's current public key (`vkey`).
    public_key: String,
}

/// Every signed checkpoint (C2SP tlog-checkpoint signed notes), oldest first, with the ledger's
/// public key. Roles `auditor` or `operator`.
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "Audit",
    responses(
        (status = 200, body = CheckpointsDocument, content_type = "application/vnd.api+json"),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn checkpoints(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Auditor, Role::Operator])?;
    let cps = st.journal.checkpoints().await?;
    let count = cps.len();
    let body = CheckpointsDocument {
        data: cps
            .into_iter()
            .map(|c| CheckpointResource {
                kind: "checkpoint",
                id: c.size.to_string(),
                attributes: c,
            })
            .collect(),
        meta: CheckpointsMeta {
            public_key: st.ledger.verifier().to_string(),
        },
    };
    Ok(with_note(
        jsonapi(StatusCode::OK, &body)?,
        AuditNote {
            action: "audit.checkpoints.list",
            object_type: Some("checkpoint"),
            detail: Some(serde_json::json!({ "results": count })),
            ..Default::default()
        },
    ))
}

// --- log management -----------------------------------------------------------------------------

/// Query parameters of `GET /v1/logs/audit`.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AuditLogParams {
    /// Records at or after this time (RFC 3339).
    from: Option<String>,
    /// Records before this time (RFC 3339).
    to: Option<String>,
    /// Records with this correlation id.
    correlation_id: Option<String>,
    /// Records by this actor (API key id, `cli:<user>`, `system`, `anonymous`).
    actor: Option<String>,
    /// Records about this force.
    force: Option<String>,
    /// `success`, `failure`, `denied` or `duplicate`.
    outcome: Option<String>,
    /// Records of this operation (`exchange.view`, `auth.failure`, …).
    operation: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<usize>,
    /// Continue after this cursor (from `links.next`).
    cursor: Option<u64>,
}

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditLogPage {
    data: Vec<AuditLogResource>,
    links: Links,
}

/// One audit record (its ledger entry: ASIM-style fields, as hashed).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditLogResource {
    /// `auditRecord`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The sequence number.
    id: String,
    /// `Seq`, `EventStartTime`, `EventType`, `Operation`, `Object`, `ObjectType`, `ObjectId`,
    /// `EventResult`, `EventResultDetails`, `ActorUsername`, `ActorRole`, `Force`, `SrcIpAddr`,
    /// `HttpUserAgent`, `CorrelationId`, `EventUid`, `AdditionalFields`, and `LeafHash`.
    #[schema(value_type = Object)]
    attributes: serde_json::Value,
}

/// Paging links.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Links {
    /// The next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn next_link(path: &str, params: &impl Serialize, cursor: Option<i64>) -> Option<String> {
    let cursor = cursor?;
    let mut v = serde_json::to_value(params).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("cursor".into(), cursor.into());
    let mut s = form_urlencoded(obj);
    s.insert_str(0, &format!("{path}?"));
    Some(s)
}

fn form_urlencoded(obj: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = Vec::new();
    for (k, v) in obj {
        let v = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let enc: String = v
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        out.push(format!("{k}={enc}"));
    }
    out.join("&")
}

/// Queries the audit ledger by time range, correlation id, actor, force, outcome and operation;
/// newest first, paged. Role `auditor`. The search itself is audited with the SHA-256 of its
/// criteria.
#[utoipa::path(get, path = "/v1/logs/audit", tag = "Audit", params(AuditLogParams),
    responses(
        (status = 200, body = AuditLogPage, content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn audit_log(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<AuditLogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Auditor])?;
    let mut q = query(params)?;
    let limit = limit_param(q.limit)?;
    q.force = scoped_force(&p, q.force.as_ref())?;
    if let Some(o) = &q.outcome
        && !matches!(o.as_str(), "success" | "failure" | "denied" | "duplicate")
    {
        return Err(bad_query(
            "outcome",
            "outcome: expected success, failure, denied or duplicate",
        ));
    }
    let query = AuditQuery {
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
        correlation_id: q.correlation_id.clone(),
        actor: q.actor.clone(),
        force: q.force.clone(),
        result: q.outcome.clone(),
        action: q.operation.clone(),
    };
    let page = st.journal.search_audit(&query, q.cursor, limit).await?;
    let mut data = Vec::with_capacity(page.items.len());
    for rec in &page.items {
        let entry =
            replay::ledger::AuditEntry::from_record(rec).map_err(|e| ApiError::internal(&e))?;
        let leaf = entry.leaf_hash().map_err(|e| ApiError::internal(&e))?;
        let mut attributes = serde_json::to_value(&entry).map_err(|e| ApiError::internal(&e))?;
        attributes["LeafHash"] = hex::encode(leaf).into();
        data.push(AuditLogResource {
            kind: "auditRecord",
            id: rec.seq.to_string(),
            attributes,
        });
    }
    let count = data.len();
    let criteria = {
        let mut c = serde_json::to_value(&q).unwrap_or_default();
        if let Some(o) = c.as_object_mut() {
            o.remove("cursor");
            o.remove("limit");
        }
        c
    };
    let body = AuditLogPage {
        data,
        links: Links {
            next: next_link("/v1/logs/audit", &q, page.next),
        },
    };
    Ok(with_note(
        jsonapi(StatusCode::OK, &body)?,
        AuditNote {
            action: "audit.search",
            object_type: Some("audit_record"),
            force: q.force.clone(),
            detail: Some(serde_json::json!({
                "criteriaSha256": criteria_hash(&criteria),
                "results": count,
            })),
            ..Default::default()
        },
    ))
}

/// Query parameters of `GET /v1/logs/integration`.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct IntegrationLogParams {
    /// Exchanges journalled at or after this time (RFC 3339).
    from: Option<String>,
    /// Exchanges journalled before this time (RFC 3339).
    to: Option<String>,
    /// Exchanges with this correlation id.
    correlation_id: Option<String>,
    /// Exchanges of this force.
    force: Option<String>,
    /// `pending`, `delivered` or `parked`.
    outcome: Option<String>,
    /// Exchange kind, e.g. `incident.submitted`.
    kind: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<usize>,
    /// Continue after this cursor (from `links.next`).
    cursor: Option<i64>,
}

/// A page of integration-log entries (exchanges), newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IntegrationLogPage {
    data: Vec<IntegrationLogResource>,
    links: Links,
}

/// One exchange, as summarised in the journal.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IntegrationLogResource {
    /// `exchange`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Exchange id.
    id: String,
    attributes: replay::ExchangeSummary,
}

/// Queries the integration log (every exchange and its outcome) by time range, correlation id,
/// force, outcome and kind; newest first, paged. Roles `operator` or `auditor`. Audited with the
/// SHA-256 of its criteria.
#[utoipa::path(get, path = "/v1/logs/integration", tag = "Audit", params(IntegrationLogParams),
    responses(
        (status = 200, body = IntegrationLogPage, content_type = "application/vnd.api+json"),
        (status = 400, body = crate::error::ErrorDocument),
        (status = 403, body = crate::error::ErrorDocument)),
    security(("apiKey" = []), ("basic" = [])))]
pub(crate) async fn integration_log(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    params: Result<Query<IntegrationLogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_any(&p, &[Role::Operator, Role::Auditor])?;
    let mut q = query(params)?;
    let limit = limit_param(q.limit)?;
    q.force = scoped_force(&p, q.force.as_ref())?;
    let status = q
        .outcome
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|_| bad_query("outcome", "outcome: expected pending, delivered or parked"))?;
    let filter = ExchangeFilter {
        status,
        force: q.force.clone(),
        kind: q.kind.clone(),
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
        correlation_id: q.correlation_id.clone(),
        ..Default::default()
    };
    let page = st.journal.list(&filter, q.cursor, limit).await?;
    let count = page.items.len();
    let criteria = {
        let mut c = serde_json::to_value(&q).unwrap_or_default();
        if let Some(o) = c.as_object_mut() {
            o.remove("cursor");
            o.remove("limit");
        }
        c
    };
    let body = IntegrationLogPage {
        data: page
            .items
            .into_iter()
            .map(|s| IntegrationLogResource {
                kind: "exchange",
                id: s.id.to_string(),
                attributes: s,
            })
            .collect(),
        links: Links {
            next: next_link("/v1/logs/integration", &q, page.next),
        },
    };
    Ok(with_note(
        jsonapi(StatusCode::OK, &body)?,
        AuditNote {
            action: "exchange.search",
            object_type: Some("exchange"),
            force: q.force.clone(),
            detail: Some(serde_json::json!({
                "criteriaSha256": criteria_hash(&criteria),
                "results": count,
            })),
            ..Default::default()
        },
    ))
}
