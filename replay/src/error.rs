//! Journal errors.

/// A journal failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The journal cannot persist right now (disk full, I/O error, database down). Callers answer
    /// 503 and the client retries; nothing was acknowledged.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// The journal URL names a backend this build does not have, or is malformed.
    #[error("unsupported journal url {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No exchange with this id.
    #[error("exchange {0} not found")]
    NotFound(String),
    /// The operation does not apply to the exchange in its current state.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (for example an exchange id that is not a UUID v7).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The stored data is not what this version expects (failed migration, corruption).
    #[error("journal data invalid: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        JournalError::Unavailable(e.to_string())
    }
}
