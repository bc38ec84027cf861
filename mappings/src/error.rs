//! The crate's error types: one per audience.
//!
//! - [`FieldError`]: an inbound document broke a rule (told to the sender, e.g. iHub);
//! - [`MappingError`]: a document could not be mapped by a spec (parks the exchange);
//! - [`SpecError`]: a mapping spec file is wrong (told to the force integration team at start);
//! - [`UnknownVersion`]: a mapping version was asked for (configuration, replay) that is not
//!   loaded.

/// One problem with an inbound document: which field, which rule, what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON Pointer into the document as sent (`/included/3/attributes/submissionId`).
    pub pointer: String,
    /// The field by its SDM name (`submission.attributes.submissionId`).
    pub field: String,
    /// Short stable rule name: `required`, `uuid`, `rfc3339`, `date`, `time`, `type`,
    /// `codelist`, `reference`, `unique`, `base64`.
    pub rule: String,
    /// Sentence for humans, naming the field and the rule.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(
        pointer: impl Into<String>,
        field: impl Into<String>,
        rule: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            field: field.into(),
            rule: rule.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.field, self.rule, self.message)
    }
}

/// A mapping failure: which spec, which rule, which source path, why.
///
/// Mapping errors are data errors: retrying the same document through the same spec fails the
/// same way, so an exchange that fails to map is parked, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec}: {path}: {message}")]
pub struct MappingError {
    /// Spec id and version (`nmpp-to-athena@1.0.0`).
    pub spec: String,
    /// Where in the source document: a JSON Pointer (`/parties/0/person/gender`) when the
    /// failing value could be located, else the rule's source expression. For a mapped document
    /// that breaks the target model's schema, the JSON Pointer into the mapped document.
    pub path: String,
    /// Why, naming the rule (its target field, block and `file:line`) and the value.
    pub message: String,
}

/// Error loading a spec (names the file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SpecError {
    /// Spec file (its name as given to the loader).
    pub file: String,
    /// 1-based line (0 when the problem is the file as a whole, e.g. it cannot be read).
    pub line: usize,
    /// Why.
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

/// A mapping version that is not loaded, with the versions that are (for the caller to show).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no mapping spec {requested:?} is loaded (loaded: {})", available.join(", "))]
pub struct UnknownVersion {
    /// What was asked for (`nmpp-to-athena@9.0.0`).
    pub requested: String,
    /// `id@version` of every loaded version of that id, oldest first (of every spec when the
    /// id itself is unknown).
    pub available: Vec<String>,
}
