//! Value transforms (`transform = [...]` in a rule), applied to each value in order.

use std::borrow::Cow;

use serde_json::Value;

use crate::engine::{Frame, Leaf, Run};
use crate::input::Tree;
use crate::path::Path;
use crate::values;

/// The transform names a spec may use, for error messages and documentation.
pub(crate) const NAMES: &[&str] = &[
    "string",
    "boolean",
    "integer",
    "trim",
    "lowercase",
    "uppercase",
    "date",
    "time",
    "datetime",
    "sha256_base64",
    "base64_size",
    "{ join = SEP }",
    "{ split = SEP }",
    "{ format = \"..{}..\" }",
    "{ position_in = PATH }",
];

/// One compiled transform.
#[derive(Debug)]
pub(crate) enum Transform {
    /// Scalars to their text (`42` → `"42"`, `true` → `"true"`).
    String,
    /// Booleans and string booleans in any case → `true`/`false`.
    Boolean,
    /// Integers and strings of digits → an integer.
    Integer,
    /// Strips leading and trailing whitespace.
    Trim,
    Lowercase,
    Uppercase,
    /// `YYYY-MM-DD`, or the date of an RFC 3339 date-time.
    Date,
    /// `HH:MM:SS[.fff]` (`HH:MM` gains `:00`); an RFC 3339 date-time is kept.
    Time,
    /// Checks an RFC 3339 date-time (kept as sent).
    DateTime,
    /// Lower-case hex SHA-256 of the bytes a base64 string encodes.
    Sha256Base64,
    /// Number of bytes a base64 string encodes.
    Base64Size,
    /// An array of scalars joined into one string.
    Join(String),
    /// A string split into an array of its non-empty parts (`"Sam Alex"` → `["Sam", "Alex"]`).
    Split(String),
    /// Text with `{}` replaced by the value (`"p{}"`).
    Format(String, String),
    /// 1-based position of the value among the values of a path.
    PositionIn(Path),
}

impl Transform {
    /// The transform with a bare name.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "trim" => Self::Trim,
            "lowercase" => Self::Lowercase,
            "uppercase" => Self::Uppercase,
            "date" => Self::Date,
            "time" => Self::Time,
            "datetime" => Self::DateTime,
            "sha256_base64" => Self::Sha256Base64,
            "base64_size" => Self::Base64Size,
            _ => return None,
        })
    }

    /// How the transform is written in a spec (for documentation).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Boolean => "boolean".into(),
            Self::Integer => "integer".into(),
            Self::Trim => "trim".into(),
            Self::Lowercase => "lowercase".into(),
            Self::Uppercase => "uppercase".into(),
            Self::Date => "date".into(),
            Self::Time => "time".into(),
            Self::DateTime => "datetime".into(),
            Self::Sha256Base64 => "sha256_base64".into(),
            Self::Base64Size => "base64_size".into(),
            Self::Join(sep) => format!("join {sep:?}"),
            Self::Split(sep) => format!("split {sep:?}"),
            Self::Format(pre, post) => format!("format {:?}", format!("{pre}{{}}{post}")),
            Self::PositionIn(p) => format!("position_in `{}`", p.text),
        }
    }

    /// Applies the transform to one value.
    pub(crate) fn apply<'a, D: Tree>(
        &self,
        v: Leaf<'a, D>,
        run: &Run<'a, D>,
        frame: &Frame<'a, '_, D>,
    ) -> Result<Leaf<'a, D>, String> {
        let found = |what: &str, v: &Leaf<'_, D>| {
            format!(
                "{}: expected {what}, found {}",
                self.describe(),
                short(&v.json())
            )
        };
        let string = |s: String| Ok(Leaf::owned(Value::String(s)));
        match self {
            Self::String if v.as_str().is_some() => Ok(v),
            Self::String => match v.scalar_text() {
                Some(text) => string(text.into_owned()),
                None => Err(found("a string, number or boolean", &v)),
            },
            Self::Boolean => match v.as_bool() {
                Some(_) if v.is_boolean() => Ok(v),
                Some(b) => Ok(Leaf::owned(Value::Bool(b))),
                None => Err(found("a boolean (true/false)", &v)),
            },
            Self::Integer => values::as_integer(&v.json())
                .map(Leaf::owned)
                .ok_or_else(|| found("an integer", &v)),
            Self::Trim | Self::Lowercase | Self::Uppercase => {
                let Some(s) = v.as_str() else {
                    return Err(found("a string", &v));
                };
                let out = match self {
                    Self::Trim if s.trim().len() == s.len() => return Ok(v),
                    Self::Trim => s.trim().to_owned(),
                    Self::Lowercase => s.to_lowercase(),
                    _ => s.to_uppercase(),
                };
                string(out)
            }
            Self::Date => {
                let date = v.as_str().and_then(values::to_date);
                match date {
                    Some(d) if Some(d.len()) == v.as_str().map(str::len) => Ok(v),
                    Some(d) => string(d.to_owned()),
                    None => Err(found("a date (YYYY-MM-DD) or RFC 3339 date-time", &v)),
                }
            }
            Self::Time => match v.as_str().and_then(values::to_time) {
                Some(Cow::Owned(t)) => string(t),
                Some(Cow::Borrowed(_)) => Ok(v),
                None => Err(found("a time (HH:MM:SS) or RFC 3339 date-time", &v)),
            },
            Self::DateTime => match v.as_str() {
                Some(s) if values::is_rfc3339(s) => Ok(v),
                _ => Err(found("an RFC 3339 date-time", &v)),
            },
            Self::Sha256Base64 => {
                let bytes = v.as_str().and_then(values::base64_decode);
                match bytes {
                    Some(b) => string(values::sha256_hex(&b)),
                    None => Err(format!("{}: expected base64 content", self.describe())),
                }
            }
            Self::Base64Size => match v.as_str().and_then(values::base64_len) {
                Some(n) => Ok(Leaf::owned(Value::from(n))),
                None => Err(format!("{}: expected base64 content", self.describe())),
            },
            Self::Join(_) if v.as_str().is_some() => Ok(v),
            Self::Join(sep) => match &*v.json() {
                Value::Array(items) => {
                    let mut out = String::new();
                    for item in items.iter().filter(|i| !values::is_absent(i)) {
                        let Some(text) = values::scalar_text(item) else {
                            return Err(found("an array of strings", &v));
                        };
                        if !out.is_empty() {
                            out.push_str(sep);
                        }
                        out.push_str(&text);
                    }
                    string(out)
                }
                _ => Err(found("an array of strings", &v)),
            },
            Self::Split(_) if v.is_array() => Ok(v),
            Self::Split(sep) => match &*v.json() {
                Value::String(s) => Ok(Leaf::owned(Value::Array(
                    s.split(sep.as_str())
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_owned()))
                        .collect(),
                ))),
                _ => Err(found("a string", &v)),
            },
            Self::Format(pre, post) => match v.scalar_text() {
                Some(text) => {
                    let mut out = String::with_capacity(pre.len() + text.len() + post.len());
                    out.push_str(pre);
                    out.push_str(&text);
                    out.push_str(post);
                    string(out)
                }
                None => Err(found("a string, number or boolean", &v)),
            },
            Self::PositionIn(path) => match run.position_in(path, frame, &v.json()) {
                Some(n) => Ok(Leaf::owned(Value::from(n))),
                None => Err(format!(
                    "{}: {} is not among the values of `{}`",
                    self.describe(),
                    short(&v.json()),
                    path.text
                )),
            },
        }
    }
}

/// A value for an error message: quoted strings, other JSON shortened.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 60 => format!("{s:?}"),
        Value::String(_) => "a long string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}
