//! HTTP helpers shared by the STORM, DAMS and iHub adapters: building the client (with an
//! optional mutual-TLS identity and extra trusted roots), URLs, bounded reads, and the
//! classification of transport failures and statuses into [`ErrorClass`]es.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};

use crate::{AdapterError, ErrorClass};

/// What [`client`] needs.
pub(crate) struct ClientOptions<'a> {
    pub(crate) adapter: &'static str,
    pub(crate) timeout_ms: u64,
    pub(crate) connect_timeout_ms: u64,
    /// PEM of extra certificate authorities to trust (a force's private CA).
    pub(crate) ca_pem: Option<&'a str>,
    /// PEM of a client certificate and its key, for mutual TLS.
    pub(crate) identity_pem: Option<&'a str>,
}

/// A reqwest client with our timeouts, no redirects, and the TLS material given.
pub(crate) fn client(o: &ClientOptions<'_>) -> Result<reqwest::Client, AdapterError> {
    let adapter = o.adapter;
    for (field, ms) in [
        ("timeout_ms", o.timeout_ms),
        ("connect_timeout_ms", o.connect_timeout_ms),
    ] {
        if ms == 0 {
            return Err(config_error(adapter, field, "must be greater than 0"));
        }
    }
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(o.timeout_ms))
        .connect_timeout(Duration::from_millis(o.connect_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .user_agent(concat!("nmpp-gateway/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = o.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| config_error(adapter, "ca_pem", "not PEM certificates"))?;
        if certs.is_empty() {
            return Err(config_error(adapter, "ca_pem", "holds no certificate"));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(pem) = o.identity_pem {
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
            config_error(
                adapter,
                "client_certificate",
                "not a PEM certificate with its private key",
            )
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| AdapterError::new(ErrorClass::Internal, format!("{adapter}: {}", chain(&e))))
}

pub(crate) fn config_error(adapter: &str, field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("{adapter}.{field}: {rule}"))
}

/// Checks a base URL: absolute http(s), a host, no credentials, query or fragment.
pub(crate) fn base_url(adapter: &str, field: &str, raw: &str) -> Result<Url, AdapterError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| config_error(adapter, field, &format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error(adapter, field, "scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config_error(adapter, field, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config_error(adapter, field, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(
            adapter,
            field,
            "must not have a query or fragment",
        ));
    }
    Ok(url)
}

/// `base` with `path` appended to its own path.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// Classifies a failure to get an answer.
pub(crate) fn classify_transport(target: &str, error: &reqwest::Error) -> AdapterError {
    let detail = chain(error);
    if error.is_connect() {
        AdapterError::new(
            ErrorClass::Connect,
            format!("could not connect to {target}: {detail}"),
        )
    } else if error.is_timeout() {
        AdapterError::new(
            ErrorClass::Timeout,
            format!("no complete answer from {target} in time: {detail}"),
        )
    } else if error.is_builder() {
        AdapterError::new(
            ErrorClass::Internal,
            format!("could not build the request to {target}: {detail}"),
        )
    } else {
        AdapterError::new(
            ErrorClass::Protocol,
            format!("the connection to {target} failed before a complete answer: {detail}"),
        )
    }
}

/// Classifies an unexpected status; `detail` is a short, safe description from the body.
pub(crate) fn classify_status(
    target: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: Option<&str>,
) -> AdapterError {
    let code = status.as_u16();
    let text = |what: &str| match detail {
        Some(d) => format!("{target} answered {code} {what}: {d}"),
        None => format!("{target} answered {code} {what}"),
    };
    let (class, message) = match code {
        401 | 403 => (ErrorClass::Unauthorized, text("(credentials refused)")),
        408 => (ErrorClass::Timeout, text("(request timeout)")),
        429 => (ErrorClass::Throttled, text("(too many requests)")),
        503 if retry_after.is_some() => (ErrorClass::Throttled, text("(unavailable, retry later)")),
        500..=599 => (ErrorClass::Upstream5xx, text("(server error)")),
        400..=499 => (ErrorClass::Rejected, text("(rejected)")),
        _ => (ErrorClass::Protocol, text("(unexpected status)")),
    };
    AdapterError::new(class, message)
        .with_status(code)
        .with_retry_after(retry_after)
}

/// `Retry-After` as delay-seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Reads at most `limit` bytes of the body as UTF-8 (`protocol` beyond, or when not UTF-8).
pub(crate) async fn read_limited(
    target: &str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<String, AdapterError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify_transport(target, &e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(AdapterError::new(
                ErrorClass::Protocol,
                format!("{target}'s answer is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| {
        AdapterError::new(
            ErrorClass::Protocol,
            format!("{target}'s answer is not UTF-8"),
        )
    })
}

/// A printable bounded excerpt: no control characters, at most 200 characters.
pub(crate) fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The codes and pointers of a JSON:API `errors[]` body, without details that may echo data.
pub(crate) fn jsonapi_error_detail(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let parts: Vec<String> = v
        .get("errors")?
        .as_array()?
        .iter()
        .take(5)
        .map(|e| {
            let code = e
                .get("code")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            match e
                .pointer("/source/pointer")
                .and_then(serde_json::Value::as_str)
            {
                Some(p) => format!("code {} at {}", clean(code), clean(p)),
                None => format!("code {}", clean(code)),
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// An error and its causes.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
