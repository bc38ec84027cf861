//! The Logs Ingestion call, the OAuth2 token cache, and the classification of every answer.
//!
//! | answer | outcome |
//! |---|---|
//! | `204` (also `200`/`202`) | `Delivered` (accepted by the API; not a proof of storage) |
//! | `401` | the cached token is dropped, a new one fetched, the call made once more; a second `401` is `unauthorized` |
//! | `403` | `unauthorized` (the app lacks *Monitoring Metrics Publisher* on the rule) |
//! | `413` | `Refused`: the driver splits the batch and retries the halves |
//! | `400` | `Refused` (rows not matching the stream): split to isolate and quarantine |
//! | `404` | `internal`: wrong endpoint, rule or stream — halt and alert |
//! | `429`, `503` with `Retry-After` | `throttled`, waiting at least `Retry-After` |
//! | other `5xx` | `upstream_5xx` |
//! | token endpoint: `invalid_client`/`unauthorized_client`/other refusals | `unauthorized` |
//! | token endpoint: `5xx`, `429`, transport failure | retryable (`upstream_5xx`, `throttled`, `connect`, `timeout`) |
//!
//! Tokens are cached and renewed when less than `token_refresh_margin_s` (at most half the
//! token's lifetime) remains. Error messages never contain the secret, the token or row contents.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};

use super::config::SentinelConfig;
use super::mapping;
use crate::sink::{
    AuditSink, BatchLimits, EncodedRecord, SendOutcome, SinkRecord, classify_transport, elapsed_ms,
    gzip, join_path, parse_base_url, read_limited, retry_after,
};
use crate::{AdapterError, ErrorClass};

const TARGET: &str = "logs ingestion api";
const TOKEN_TARGET: &str = "entra token endpoint";
const MAX_ANSWER_BYTES: usize = 64 * 1024;

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A bearer token and when to stop using it.
struct Token {
    value: HeaderValue,
    renew_at: Instant,
}

/// A Microsoft Sentinel (Logs Ingestion API) audit sink.
pub struct SentinelSink {
    name: String,
    http: reqwest::Client,
    url: Url,
    oauth: TokenClient,
    scope: String,
    refresh_margin: Duration,
    gzip: bool,
    max_batch_bytes: usize,
    token: Option<Token>,
}

impl std::fmt::Debug for SentinelSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSink")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

fn config_error(name: &str, field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("{name}.{field}: {rule}"))
}

impl SentinelSink {
    /// Checks `cfg` and builds the sink. No token is fetched yet (the first send or health check
    /// does). Every configuration problem is an [`ErrorClass::Internal`] error naming the field.
    pub async fn new(cfg: SentinelConfig) -> Result<Self, AdapterError> {
        let name = cfg.name.trim().to_owned();
        if name.is_empty() {
            return Err(config_error("sentinel", "name", "must not be empty"));
        }
        let endpoint = parse_base_url(&format!("{name}.endpoint"), &cfg.endpoint)?;
        let authority = parse_base_url(&format!("{name}.authority"), &cfg.authority)?;
        let segment = |field: &str, value: &str| {
            let ok = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if ok {
                Ok(())
            } else {
                Err(config_error(
                    &name,
                    field,
                    "must be non-empty letters, digits, '-', '_' or '.'",
                ))
            }
        };
        segment("dcr_immutable_id", &cfg.dcr_immutable_id)?;
        segment("stream", &cfg.stream)?;
        segment("tenant_id", &cfg.tenant_id)?;
        segment("api_version", &cfg.api_version)?;
        if cfg.client_id.trim().is_empty() {
            return Err(config_error(&name, "client_id", "must not be empty"));
        }
        if cfg.client_secret.expose().is_empty() {
            return Err(config_error(&name, "client_secret", "must not be empty"));
        }
        if cfg.max_batch_bytes < 1024 {
            return Err(config_error(
                &name,
                "max_batch_bytes",
                "must be at least 1024",
            ));
        }
        for (field, ms) in [
            ("timeout_ms", cfg.timeout_ms),
            ("connect_timeout_ms", cfg.connect_timeout_ms),
        ] {
            if ms == 0 {
                return Err(config_error(&name, field, "must be greater than 0"));
            }
        }
        let mut url = join_path(
            &endpoint,
            &format!(
                "/dataCollectionRules/{}/streams/{}",
                cfg.dcr_immutable_id, cfg.stream
            ),
        );
        url.set_query(Some(&format!("api-version={}", cfg.api_version)));
        let token_url = join_path(&authority, &format!("/{}/oauth2/v2.0/token", cfg.tenant_id));
        let oauth = BasicClient::new(ClientId::new(cfg.client_id.trim().to_owned()))
            .set_client_secret(ClientSecret::new(cfg.client_secret.expose().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(
                TokenUrl::new(token_url.to_string())
                    .map_err(|_| config_error(&name, "authority", "not a valid token URL"))?,
            );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nmpp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AdapterError::new(ErrorClass::Internal, format!("{name}: {e}")))?;
        Ok(Self {
            name,
            http,
            url,
            oauth,
            scope: cfg.scope,
            refresh_margin: Duration::from_secs(cfg.token_refresh_margin_s),
            gzip: cfg.gzip,
            max_batch_bytes: cfg.max_batch_bytes,
            token: None,
        })
    }

    /// A valid bearer header: the cached token, or a new one.
    async fn bearer(&mut self) -> Result<HeaderValue, AdapterError> {
        if let Some(token) = &self.token
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        self.token = None;
        let started = Instant::now();
        let http = self.http.clone();
        let client = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            async move { execute(&http, request).await }
        };
        let answer = self
            .oauth
            .exchange_client_credentials()
            .add_scope(Scope::new(self.scope.clone()))
            .request_async(&client)
            .await
            .map_err(|e| classify_token_error(&e))?;
        let lifetime = answer.expires_in().unwrap_or(Duration::from_secs(3600));
        let margin = self.refresh_margin.min(lifetime / 2);
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", answer.access_token().secret())).map_err(
                |_| {
                    AdapterError::new(
                        ErrorClass::Protocol,
                        "the token endpoint issued a token that is not a valid header value",
                    )
                },
            )?;
        value.set_sensitive(true);
        tracing::info!(
            sink = %self.name,
            lifetime_s = lifetime.as_secs(),
            renew_in_s = (lifetime - margin).as_secs(),
            elapsed_ms = elapsed_ms(started),
            "sentinel access token obtained"
        );
        self.token = Some(Token {
            value: value.clone(),
            renew_at: started + (lifetime - margin),
        });
        Ok(value)
    }

    async fn post(&mut self, body: &Bytes) -> Result<reqwest::Response, AdapterError> {
        let bearer = self.bearer().await?;
        let mut request = self
            .http
            .post(self.url.clone())
            .header(header::AUTHORIZATION, bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                "x-ms-client-request-id",
                uuid::Uuid::new_v4().hyphenated().to_string(),
            );
        if self.gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        request
            .body(body.clone())
            .send()
            .await
            .map_err(|e| classify_transport(TARGET, &e))
    }

    async fn send_batch(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        let size: usize = batch.iter().map(|r| r.bytes.len() + 1).sum::<usize>() + 2;
        let mut body = Vec::with_capacity(size);
        body.push(b'[');
        for (i, record) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&record.bytes);
        }
        body.push(b']');
        let body = Bytes::from(if self.gzip { gzip(&body) } else { body });
        let mut refreshed = false;
        loop {
            let response = self.post(&body).await?;
            let status = response.status();
            let after = retry_after(response.headers());
            let answer = read_limited(TARGET, response, MAX_ANSWER_BYTES)
                .await
                .unwrap_or_default();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // Expired or revoked before we thought: a new token, and once more.
                tracing::info!(sink = %self.name, "sentinel answered 401; renewing the access token");
                self.token = None;
                refreshed = true;
                continue;
            }
            return classify_answer(status, after, &answer);
        }
    }
}

/// Runs an oauth2 request with our HTTP client. `5xx` and `429` become errors here, so that
/// they keep their class instead of turning into unparseable error responses.
async fn execute(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, AdapterError> {
    let (parts, body) = request.into_parts();
    let url = Url::parse(&parts.uri.to_string())
        .map_err(|e| AdapterError::new(ErrorClass::Internal, format!("token URL: {e}")))?;
    let response = http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| classify_transport(TOKEN_TARGET, &e))?;
    let status = response.status();
    let after = retry_after(response.headers());
    let headers = response.headers().clone();
    let body = read_limited(TOKEN_TARGET, response, MAX_ANSWER_BYTES).await?;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let class = if status == StatusCode::TOO_MANY_REQUESTS {
            ErrorClass::Throttled
        } else {
            ErrorClass::Upstream5xx
        };
        return Err(AdapterError::new(
            class,
            format!("the entra token endpoint answered {}", status.as_u16()),
        )
        .with_status(status.as_u16())
        .with_retry_after(after));
    }
    let mut answer = oauth2::http::Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        answer = answer.header(name, value);
    }
    answer
        .body(body)
        .map_err(|e| AdapterError::new(ErrorClass::Protocol, format!("token answer: {e}")))
}

fn classify_token_error<T: oauth2::ErrorResponse + 'static>(
    error: &RequestTokenError<AdapterError, T>,
) -> AdapterError {
    match error {
        RequestTokenError::Request(e) => e.clone(),
        RequestTokenError::ServerResponse(answer) => {
            // The OAuth error code (`invalid_client`, …) and Entra's description: no secrets.
            let detail: String = answer.to_string().chars().take(300).collect();
            AdapterError::new(
                ErrorClass::Unauthorized,
                format!("the entra token endpoint refused the client credentials: {detail}"),
            )
        }
        RequestTokenError::Parse(_, _) => AdapterError::new(
            ErrorClass::Protocol,
            "the entra token endpoint answered something that is not a token response",
        ),
        RequestTokenError::Other(detail) => AdapterError::new(
            ErrorClass::Protocol,
            format!("token request failed: {detail}"),
        ),
    }
}

/// Classifies the answer to an ingestion call (after the one `401` retry).
pub(super) fn classify_answer(
    status: StatusCode,
    after: Option<Duration>,
    body: &[u8],
) -> Result<SendOutcome, AdapterError> {
    let code = status.as_u16();
    if matches!(code, 200 | 202 | 204) {
        return Ok(SendOutcome::Delivered);
    }
    let detail = error_code(body);
    let message = match &detail {
        Some(d) => format!("the logs ingestion api answered {code} ({d})"),
        None => format!("the logs ingestion api answered {code}"),
    };
    let class = match code {
        400 | 413 => {
            return Ok(SendOutcome::Refused {
                first_bad: None,
                error: AdapterError::new(ErrorClass::Rejected, message).with_status(code),
            });
        }
        401 | 403 => ErrorClass::Unauthorized,
        408 => ErrorClass::Timeout,
        429 => ErrorClass::Throttled,
        503 if after.is_some() => ErrorClass::Throttled,
        500..=599 => ErrorClass::Upstream5xx,
        // 404 (rule, stream or endpoint wrong) and anything unexpected: configuration.
        _ => ErrorClass::Internal,
    };
    Err(AdapterError::new(class, message)
        .with_status(code)
        .with_retry_after(after))
}

/// `error.code` of an Azure error body, bounded.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.get("code")?.as_str()?;
    Some(
        code.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(80)
            .collect(),
    )
}

#[async_trait]
impl AuditSink for SentinelSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_bytes: self.max_batch_bytes,
            max_records: 100_000,
            per_record_overhead: 1,
            per_batch_overhead: 2,
        }
    }

    fn encode(&self, record: &SinkRecord) -> Result<Bytes, AdapterError> {
        mapping::asim_row(record)
    }

    #[tracing::instrument(name = "sentinel.send", skip_all, fields(sink = %self.name, records = batch.len()))]
    async fn send(&mut self, batch: &[EncodedRecord]) -> Result<SendOutcome, AdapterError> {
        self.send_batch(batch).await
    }

    #[tracing::instrument(name = "sentinel.health", skip_all, fields(sink = %self.name))]
    async fn health(&mut self) -> Result<(), AdapterError> {
        // There is no health endpoint: a token proves the credentials, and an empty batch proves
        // the rule and stream (the API accepts `[]` with 204).
        match self.send_batch(&[]).await? {
            SendOutcome::Delivered | SendOutcome::Accepted(_) => Ok(()),
            SendOutcome::Refused { error, .. } => Err(error),
        }
    }
}
