//! OAuth2 client credentials (RFC 6749 §4.4) with the `oauth2` crate driven by our own reqwest
//! client, and a token cache shared by the adapters that need it (`dams`, `ihub`).
//!
//! A token is reused until `refresh_margin` (at most half its lifetime) before it expires, then
//! renewed; an adapter that gets `401` from the API calls [`TokenCache::invalidate`] and tries
//! once more with a new token. Only one renewal runs at a time. Tokens and secrets never reach
//! logs or error messages.
//!
//! | token endpoint answer | class |
//! |---|---|
//! | a token | — |
//! | an OAuth error (`invalid_client`, …) | `unauthorized` |
//! | `5xx` / `429` | `upstream_5xx` / `throttled` |
//! | no answer | `connect` / `timeout` |
//! | not a token response | `protocol` |

use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use crate::athena::Secret;
use crate::{AdapterError, ErrorClass};

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

const MAX_ANSWER_BYTES: usize = 64 * 1024;

struct Token {
    value: HeaderValue,
    renew_at: Instant,
}

/// A cached bearer token for one client registration.
pub(crate) struct TokenCache {
    adapter: &'static str,
    oauth: Client,
    http: reqwest::Client,
    scope: Option<String>,
    refresh_margin: Duration,
    token: tokio::sync::Mutex<Option<Token>>,
    issued: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// A cache for `client_id`/`client_secret` at `token_url`, fetching with `http`.
    pub(crate) fn new(
        adapter: &'static str,
        http: reqwest::Client,
        token_url: &str,
        client_id: &str,
        client_secret: &Secret,
        scope: Option<String>,
        refresh_margin: Duration,
    ) -> Result<Self, AdapterError> {
        let url = TokenUrl::new(token_url.to_owned()).map_err(|_| {
            AdapterError::new(
                ErrorClass::Internal,
                format!("{adapter}.token_url: not a valid URL"),
            )
        })?;
        let oauth = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            .set_auth_type(AuthType::BasicAuth)
            .set_token_uri(url);
        Ok(Self {
            adapter,
            oauth,
            http,
            scope,
            refresh_margin,
            token: tokio::sync::Mutex::new(None),
            issued: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many tokens this cache has fetched.
    #[cfg(test)]
    pub(crate) fn fetched(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the cached token (after the API answered `401`).
    pub(crate) async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// `Bearer …` for the API: the cached token, or a new one.
    pub(crate) async fn bearer(&self) -> Result<HeaderValue, AdapterError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        *slot = None;
        let started = Instant::now();
        let http = self.http.clone();
        let adapter = self.adapter;
        let name = adapter.to_owned();
        let client = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            let name = name.clone();
            async move { execute(&name, &http, request).await }
        };
        let mut exchange = self.oauth.exchange_client_credentials();
        if let Some(scope) = &self.scope {
            exchange = exchange.add_scope(Scope::new(scope.clone()));
        }
        let answer = exchange
            .request_async(&client)
            .await
            .map_err(|e| classify_token_error(adapter, &e))?;
        let lifetime = answer.expires_in().unwrap_or(Duration::from_secs(3600));
        let margin = self.refresh_margin.min(lifetime / 2);
        let mut value = HeaderValue::from_str(&format!(
            "Bearer {}",
            answer.access_token().secret()
        ))
        .map_err(|_| {
            AdapterError::new(
                ErrorClass::Protocol,
                format!(
                    "{adapter}: the token endpoint issued a token that is not a valid header value"
                ),
            )
        })?;
        value.set_sensitive(true);
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            adapter,
            lifetime_s = lifetime.as_secs(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "access token obtained"
        );
        *slot = Some(Token {
            value: value.clone(),
            renew_at: started + (lifetime - margin),
        });
        Ok(value)
    }
}

/// Runs an oauth2 request with our client; `5xx` and `429` keep their class.
async fn execute(
    adapter: &str,
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, AdapterError> {
    let (parts, body) = request.into_parts();
    let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| {
        AdapterError::new(ErrorClass::Internal, format!("{adapter} token URL: {e}"))
    })?;
    let response = http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| crate::http::classify_transport(adapter, &e))?;
    let status = response.status();
    let after = crate::http::retry_after(response.headers());
    let headers = response.headers().clone();
    let body = crate::http::read_limited(adapter, response, MAX_ANSWER_BYTES).await?;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let class = if status == StatusCode::TOO_MANY_REQUESTS {
            ErrorClass::Throttled
        } else {
            ErrorClass::Upstream5xx
        };
        return Err(AdapterError::new(
            class,
            format!("{adapter}: the token endpoint answered {}", status.as_u16()),
        )
        .with_status(status.as_u16())
        .with_retry_after(after));
    }
    let mut answer = oauth2::http::Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        answer = answer.header(name, value);
    }
    answer.body(body.into_bytes()).map_err(|e| {
        AdapterError::new(ErrorClass::Protocol, format!("{adapter} token answer: {e}"))
    })
}

fn classify_token_error<T: oauth2::ErrorResponse + 'static>(
    adapter: &str,
    error: &RequestTokenError<AdapterError, T>,
) -> AdapterError {
    match error {
        RequestTokenError::Request(e) => e.clone(),
        RequestTokenError::ServerResponse(answer) => {
            let detail: String = answer.to_string().chars().take(200).collect();
            AdapterError::new(
                ErrorClass::Unauthorized,
                format!("{adapter}: the token endpoint refused the client credentials: {detail}"),
            )
        }
        RequestTokenError::Parse(_, _) => AdapterError::new(
            ErrorClass::Protocol,
            format!(
                "{adapter}: the token endpoint answered something that is not a token response"
            ),
        ),
        RequestTokenError::Other(detail) => AdapterError::new(
            ErrorClass::Protocol,
            format!("{adapter}: token request failed: {detail}"),
        ),
    }
}
