//! iHub Standard API v1: `POST /incidents`.
//!
//! Validate, persist (fsync'd, with its audit record) and only then answer 201. Mapping and
//! delivery to the force's systems happen afterwards, asynchronously.

use crate::{
    app::{AppState, Audited, RequestCtx},
    auth::Principal,
    config::Role,
    error::{ApiError, ErrorMeta, ErrorObject, ErrorSource, ErrorType, JSONAPI},
    metrics as m,
};
use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use replay::{AcceptOutcome, Direction, NewExchange};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Kind of the exchanges this endpoint creates.
pub const KIND: &str = "incident.submitted";

/// An iHub SDM document: a JSON:API compound document whose `data` is the `incident` and whose
/// `included[]` holds the people, locations, contact details, the `submission` and attachments.
/// Unknown attributes are kept, not rejected. See schema.ihub.police.uk (products/sdm).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct SdmDocument {
    /// The root `incident` resource.
    data: serde_json::Value,
    /// Related resources; exactly one must be the `submission`.
    included: Vec<serde_json::Value>,
}

/// The acknowledgement of a persisted submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    /// JSON:API version object.
    pub jsonapi: JsonApiVersion,
    /// The receipt resource.
    pub data: ReceiptResource,
}

/// `{"version": "1.1"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JsonApiVersion {
    /// JSON:API version.
    pub version: &'static str,
}

/// The receipt resource: its id is our exchange id.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptResource {
    /// Always `receipt`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The exchange id (UUID v7).
    pub id: String,
    /// What was accepted.
    pub attributes: ReceiptAttributes,
    /// Where operators can follow it.
    pub links: ReceiptLinks,
}

/// Receipt attributes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAttributes {
    /// The exchange id, repeated for clients that ignore `id`.
    pub exchange_id: String,
    /// The SDM `submissionId`.
    pub submission_id: String,
    /// The force key it was routed to.
    pub force: String,
    /// Always `accepted`: persisted, delivery to follow.
    pub status: &'static str,
    /// When it was persisted (RFC 3339).
    pub received_at: String,
}

/// Receipt links.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptLinks {
    /// The exchange in the operations API.
    #[serde(rename = "self")]
    pub self_: String,
}

fn media_type_ok(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == JSONAPI || essence == "application/json"
}

/// After a body is refused as too large, how much more of it is read and thrown away, and for
/// how long at most, before the 413 goes out. A server that answers and closes while the
/// client is still sending leaves unread bytes in its socket, so the kernel resets the
/// connection and the client sees a broken pipe instead of the answer; reading the rest first
/// (as nginx's lingering close does) lets it read the 413 reliably. A declared length beyond
/// this bound is answered at once.
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            "Request body too large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    let drain = |mut stream: axum::body::BodyDataStream, mut left: u64| async move {
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
            while left > 0
                && let Some(Ok(chunk)) = stream.next().await
            {
                left = left.saturating_sub(chunk.len() as u64);
            }
        })
        .await;
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if let Some(len) = declared
        && len > limit as u64
    {
        if len <= DRAIN_MAX_BYTES {
            drain(stream, len).await;
        }
        return Err(too_large());
    }
    // Room for what the client declared, up to a bound (a declared length is not a promise).
    let mut buf = Vec::with_capacity(declared.map_or(8 * 1024, |l| l.min(64 * 1024) as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The client went away mid-body, or sent a malformed chunked encoding.
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.body_unreadable",
                "Request body could not be read",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            drain(stream, DRAIN_MAX_BYTES).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the document ends early",
        serde_json::error::Category::Syntax => "syntax error",
        _ => "invalid data",
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "request.malformed_json",
        "Malformed JSON",
        format!(
            "the body is not valid JSON ({what}) at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
    )
    .at("", "document", "json")
}

fn validation_errors(errs: Vec<mappings::FieldError>, submission_id: Option<&str>) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "x", "x", "x");
    e.errors = errs
        .into_iter()
        .map(|f| ErrorObject {
            id: Uuid::now_v7().to_string(),
            status: "422".into(),
            code: format!("validation.{}", f.rule),
            title: "Invalid submission".into(),
            detail: f.message,
            source: Some(ErrorSource {
                pointer: Some(f.pointer),
                parameter: None,
            }),
            meta: ErrorMeta {
                error_type: ErrorType::Business,
                submission_id: submission_id.map(str::to_owned),
                field: Some(f.field),
                rule: Some(f.rule),
            },
        })
        .collect();
    if e.errors.is_empty() {
        e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation.document",
            "Invalid submission",
            "the document is not a valid SDM incident",
        );
    }
    e
}

/// Best-effort submission id from an invalid document, for error `meta`.
fn guess_submission_id(doc: &serde_json::Value) -> Option<String> {
    doc.get("included")?.as_array()?.iter().find_map(|r| {
        (r.get("type")?.as_str()? == "submission").then(|| {
            r.pointer("/attributes/submissionId")?
                .as_str()
                .map(str::to_owned)
        })?
    })
}

/// Accepts an SDM submission from iHub.
#[utoipa::path(
    post,
    path = "/incidents",
    tag = "iHub Standard API v1",
    request_body(content = SdmDocument, content_type = "application/vnd.api+json",
        description = "An SDM incident document (application/json is accepted too)"),
    responses(
        (status = 201, description = "Persisted; delivery follows asynchronously. A repeated \
            submissionId gets the same answer and creates nothing new (header \
            `Idempotent-Replayed: true`).", body = Receipt, content_type = "application/vnd.api+json"),
        (status = 400, description = "Malformed JSON (with line and column)", body = crate::error::ErrorDocument),
        (status = 401, description = "Missing or wrong credentials", body = crate::error::ErrorDocument),
        (status = 403, description = "Credentials not allowed to submit for this force", body = crate::error::ErrorDocument),
        (status = 413, description = "Body over the configured limit", body = crate::error::ErrorDocument),
        (status = 415, description = "Content type is not JSON", body = crate::error::ErrorDocument),
        (status = 422, description = "Business validation errors, each naming the field and rule", body = crate::error::ErrorDocument),
        (status = 503, description = "Could not persist; nothing stored; retry after `Retry-After` seconds", body = crate::error::ErrorDocument),
    ),
    security(("apiKey" = []), ("basic" = []))
)]
pub(crate) async fn post_incident(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let rejected = |e: ApiError| {
        metrics::counter!(m::EXCHANGES_TOTAL, "force" => "unknown", "kind" => KIND, "outcome" => "rejected")
            .increment(1);
        e
    };
    if !principal.has(Role::Ihub) {
        return Err(ApiError::forbidden(
            "submitting incidents needs the ihub role",
        ));
    }
    if !media_type_ok(&headers) {
        return Err(rejected(
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.media_type",
                "Unsupported media type",
                "Content-Type must be application/vnd.api+json or application/json",
            )
            .parameter("Content-Type"),
        ));
    }
    let bytes = read_body(body, &headers, st.config.http.body_limit_bytes)
        .await
        .map_err(rejected)?;
    // Parsed into a tree borrowing the body's strings, not a `serde_json::Value`: building and
    // dropping the Value was the largest part of this handler's CPU.
    let doc = mappings::Source::parse(&bytes).map_err(|e| rejected(malformed(&e)))?;
    let facts = mappings::validate_sdm_source(&doc).map_err(|errs| {
        // The error path only: the submission id (if any) for the errors' `meta`.
        let doc = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
        rejected(validation_errors(
            errs,
            guess_submission_id(&doc).as_deref(),
        ))
    })?;
    drop(doc);
    let sid = facts.submission_id.as_str();
    let Some(force) = st.pipeline.force_for_ihub_id(facts.force_identifier) else {
        return Err(rejected(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation.unknown_force",
                "Unknown force",
                format!(
                    "submission.attributes.forceIdentifier: {} is not a force served by this gateway",
                    facts.force_identifier
                ),
            )
            .submission(Some(sid)),
        ));
    };
    if !principal.may_act_for(&force) {
        return Err(rejected(
            ApiError::forbidden(format!(
                "these credentials may not submit for force {force}"
            ))
            .submission(Some(sid)),
        ));
    }
    let Some(target) = st.pipeline.target_of(&force) else {
        return Err(ApiError::internal(&format!(
            "force {force} has no records system"
        )));
    };

    let id = Uuid::now_v7();
    let received_at = crate::app::now_millis();
    let receipt = Receipt {
        jsonapi: JsonApiVersion { version: "1.1" },
        data: ReceiptResource {
            kind: "receipt",
            id: id.to_string(),
            attributes: ReceiptAttributes {
                exchange_id: id.to_string(),
                submission_id: facts.submission_id.clone(),
                force: force.clone(),
                status: "accepted",
                received_at: received_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            },
            links: ReceiptLinks {
                self_: format!("/v1/exchanges/{id}"),
            },
        },
    };
    let response = serde_json::to_vec(&receipt).map_err(|e| ApiError::internal(&e))?;
    let exchange = NewExchange {
        id,
        force: force.clone(),
        kind: KIND.into(),
        direction: Direction::Inbound,
        source_system: "ihub".into(),
        target_system: target.into(),
        api_version: "ihub-sapi/v1".into(),
        model_version: "nmpp/1".into(),
        idempotency_key: facts.submission_id.clone(),
        correlation_id: ctx.correlation_id.clone(),
        case_ref: facts.customer_reference.clone(),
        payload_type: JSONAPI.into(),
        payload: bytes,
        response: response.clone(),
    };
    let mut audit = ctx.audit(Some(&principal), "incident.create", "success");
    audit.force = Some(force.clone());
    audit.object_type = Some("exchange".into());
    audit.object_id = Some(id.to_string());
    audit.detail = Some(serde_json::json!({ "kind": KIND, "status": 201 }));

    let outcome = st.journal.accept(exchange, audit).await.map_err(|e| {
        metrics::counter!(m::JOURNAL_ERRORS, "op" => "accept").increment(1);
        ApiError::from(e).submission(Some(sid))
    })?;
    let (body, replayed, location) = match outcome {
        AcceptOutcome::Created => {
            st.work_ready.notify_one();
            metrics::counter!(m::EXCHANGES_TOTAL, "force" => force, "kind" => KIND, "outcome" => "accepted")
                .increment(1);
            (response, false, id)
        }
        AcceptOutcome::Duplicate {
            id: first,
            response: first_response,
            payload_differs,
        } => {
            if payload_differs {
                tracing::warn!(exchange_id = %first, %force,
                    "a repeated submissionId arrived with a different payload; the first one stands");
            }
            metrics::counter!(m::EXCHANGES_TOTAL, "force" => force, "kind" => KIND, "outcome" => "duplicate")
                .increment(1);
            (first_response, true, first)
        }
    };
    let mut res = (StatusCode::CREATED, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/exchanges/{location}")) {
        h.insert(header::LOCATION, v);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res.extensions_mut().insert(Audited);
    Ok(res)
}
