//! Authentication (API key + secret) and authorisation (roles and forces).
//!
//! Credentials arrive either in two headers (`x-api-key` / `x-api-secret` by default, names
//! configurable) or as HTTP Basic (`key:secret`), so a browser can open the docs page. Secrets
//! are stored as SHA-256 hashes and compared in constant time; an unknown key costs the same
//! comparison as a known one.

use crate::config::{AuthConfig, Role};
use axum::http::{HeaderMap, HeaderName, header::AUTHORIZATION};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The API key (a public identifier, safe to log).
    pub key: String,
    /// Roles granted.
    pub roles: Vec<Role>,
    /// Forces the client may act for; `None` means all.
    pub forces: Option<Vec<String>>,
}

impl Principal {
    /// Whether the principal has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the principal may act for `force`.
    pub fn may_act_for(&self, force: &str) -> bool {
        self.forces
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == force))
    }

    /// The first role, for audit records.
    pub fn primary_role(&self) -> &'static str {
        self.roles.first().map_or("none", |r| r.as_str())
    }
}

#[derive(Debug, Clone)]
struct Client {
    hash: [u8; 32],
    principal: Principal,
}

/// Why authentication failed (said to the caller without revealing which part was wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials at all.
    Missing,
    /// Key unknown or secret wrong.
    Invalid,
}

/// The configured clients, ready for constant-time checks.
#[derive(Debug)]
pub struct Credentials {
    key_header: HeaderName,
    secret_header: HeaderName,
    clients: HashMap<String, Client>,
}

/// SHA-256 of a secret as lower-case hex (what `secret_sha256` holds).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The credentials in force now: replaced whole by a configuration reload, so a client added,
/// removed or given a new secret takes effect without a restart. Clients added at start outside
/// the configuration (the embedded default's demo client) are carried over.
#[derive(Debug)]
pub struct LiveCredentials {
    current: std::sync::RwLock<std::sync::Arc<Credentials>>,
    kept: Vec<String>,
}

impl LiveCredentials {
    /// Starts with `credentials`; the clients named in `kept` survive every reload.
    pub fn new(credentials: Credentials, kept: Vec<String>) -> Self {
        Self {
            current: std::sync::RwLock::new(std::sync::Arc::new(credentials)),
            kept,
        }
    }

    /// The credentials now.
    pub fn current(&self) -> std::sync::Arc<Credentials> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the credentials with `next` (plus the kept clients).
    pub fn replace(&self, mut next: Credentials) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.kept {
            if let Some(c) = current.clients.get(key) {
                next.clients.insert(key.clone(), c.clone());
            }
        }
        *current = std::sync::Arc::new(next);
    }
}

impl Credentials {
    /// Builds the store from configuration (already validated).
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        let key_header = cfg
            .key_header
            .parse()
            .map_err(|_| "auth.key_header: invalid")?;
        let secret_header = cfg
            .secret_header
            .parse()
            .map_err(|_| "auth.secret_header: invalid")?;
        let mut clients = HashMap::new();
        for (key, c) in &cfg.clients {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&c.secret_sha256, &mut hash).map_err(|_| {
                format!("auth.clients.{key}.secret_sha256: expected 64 hex characters")
            })?;
            let forces = if c.forces.iter().any(|f| f == "*") {
                None
            } else {
                Some(c.forces.clone())
            };
            clients.insert(
                key.clone(),
                Client {
                    hash,
                    principal: Principal {
                        key: key.clone(),
                        roles: c.roles.clone(),
                        forces,
                    },
                },
            );
        }
        Ok(Self {
            key_header,
            secret_header,
            clients,
        })
    }

    /// Adds a client whose plain secret is known (the embedded demo).
    pub fn add(&mut self, key: &str, secret: &str, roles: Vec<Role>) {
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.clients.insert(
            key.to_owned(),
            Client {
                hash,
                principal: Principal {
                    key: key.to_owned(),
                    roles,
                    forces: None,
                },
            },
        );
    }

    /// The key presented, if any (for audit records of failures).
    pub fn presented_key(&self, headers: &HeaderMap) -> Option<String> {
        self.extract(headers).map(|(k, _)| k)
    }

    fn extract(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let key = headers.get(&self.key_header).and_then(|v| v.to_str().ok());
        let secret = headers
            .get(&self.secret_header)
            .and_then(|v| v.to_str().ok());
        if let (Some(k), Some(s)) = (key, secret) {
            return Some((k.to_owned(), s.to_owned()));
        }
        let basic = headers
            .get(AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (k, s) = decoded.split_once(':')?;
        Some((k.to_owned(), s.to_owned()))
    }

    /// Checks the credentials in `headers`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        let (key, secret) = self.extract(headers).ok_or(AuthFailure::Missing)?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        match self.clients.get(&key) {
            Some(c) if bool::from(c.hash.ct_eq(&presented)) => Ok(c.principal.clone()),
            Some(_) => Err(AuthFailure::Invalid),
            None => {
                // Same work as a known key, so response time does not reveal which keys exist.
                let _ = [0u8; 32].ct_eq(&presented);
                Err(AuthFailure::Invalid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    fn creds() -> Credentials {
        let mut cfg = AuthConfig::default();
        cfg.clients.insert(
            "ihub".into(),
            ClientConfig {
                secret_sha256: hash_secret("s3cret"),
                roles: vec![Role::Ihub],
                forces: vec!["kent".into()],
                description: String::new(),
            },
        );
        Credentials::new(&cfg).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.parse::<HeaderName>().unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn header_and_basic_credentials_authenticate() {
        let c = creds();
        let p = c
            .authenticate(&headers(&[
                ("x-api-key", "ihub"),
                ("x-api-secret", "s3cret"),
            ]))
            .unwrap();
        assert!(p.has(Role::Ihub) && !p.has(Role::Operator));
        assert!(p.may_act_for("kent") && !p.may_act_for("essex"));
        let basic = base64::engine::general_purpose::STANDARD.encode("ihub:s3cret");
        assert!(
            c.authenticate(&headers(&[("authorization", &format!("Basic {basic}"))]))
                .is_ok()
        );
    }

    #[test]
    fn wrong_secret_unknown_key_and_missing_are_refused() {
        let c = creds();
        let wrong = headers(&[("x-api-key", "ihub"), ("x-api-secret", "nope")]);
        assert_eq!(c.authenticate(&wrong).unwrap_err(), AuthFailure::Invalid);
        let unknown = headers(&[("x-api-key", "who"), ("x-api-secret", "s3cret")]);
        assert_eq!(c.authenticate(&unknown).unwrap_err(), AuthFailure::Invalid);
        assert_eq!(
            c.authenticate(&HeaderMap::new()).unwrap_err(),
            AuthFailure::Missing
        );
    }
}
