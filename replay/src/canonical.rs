//! A direct writer of RFC 8785 (JCS) canonical JSON objects whose member names are fixed ASCII.
//!
//! The journal hashes every audit record twice as it appends it (the chain hash and the ledger
//! leaf), on the writer that every durable write waits for. The general canonicaliser
//! (`serde_json_canonicalizer`) buffers and sorts every member of every object it writes; for
//! a record whose member names are known in advance their order is known too, so the members
//! can be written straight out, in that order: `serde_json` escapes strings exactly as RFC 8785
//! does. Free-form JSON values (an event's `detail`) are written directly too, their members
//! sorted as RFC 8785 sorts them; only numbers RFC 8785 writes differently from `serde_json`
//! (fractions, integers beyond 2^53) go through the general canonicaliser. Callers keep the
//! general path as the reference, and tests check the two agree byte for byte.

use std::io::Write;

/// The largest integer RFC 8785 writes exactly (it writes numbers as IEEE doubles).
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One canonical JSON object, written member by member in RFC 8785 order.
pub(crate) struct Object {
    out: Vec<u8>,
    #[cfg(debug_assertions)]
    last: Option<&'static str>,
}

impl Object {
    /// An empty object with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            #[cfg(debug_assertions)]
            last: None,
        }
    }

    /// Starts member `name`. Names must be ASCII and come in ascending order (RFC 8785 sorts by
    /// UTF-16 code units, which for ASCII is byte order); debug builds check it.
    fn key(&mut self, name: &'static str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(name.is_ascii(), "member name {name:?} is not ASCII");
            debug_assert!(
                self.last.is_none_or(|last| last < name),
                "member {name:?} out of RFC 8785 order"
            );
            self.last = Some(name);
        }
        self.out.push(if self.out.is_empty() { b'{' } else { b',' });
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub(crate) fn string(&mut self, name: &'static str, value: &str) {
        self.key(name);
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// A string member, or `null`.
    pub(crate) fn string_or_null(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.string(name, v),
            None => self.null(name),
        }
    }

    /// A `null` member.
    pub(crate) fn null(&mut self, name: &'static str) {
        self.key(name);
        self.out.extend_from_slice(b"null");
    }

    /// A whole-number member; the caller keeps it at most [`MAX_SAFE_INTEGER`].
    pub(crate) fn uint(&mut self, name: &'static str, value: u64) {
        debug_assert!(value <= MAX_SAFE_INTEGER);
        self.key(name);
        // Writing into a `Vec` cannot fail.
        let _ = write!(self.out, "{value}");
    }

    /// A free-form JSON member ([`write_value`]).
    pub(crate) fn value(
        &mut self,
        name: &'static str,
        value: &serde_json::Value,
    ) -> Result<(), serde_json::Error> {
        self.key(name);
        write_value(&mut self.out, value)
    }

    /// The object's bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.out.is_empty() {
            self.out.push(b'{');
        }
        self.out.push(b'}');
        self.out
    }
}

/// Writes `value` as RFC 8785 canonical JSON: object members sorted by the UTF-16 code units of
/// their names, strings escaped as `serde_json` escapes them (the same rules), whole numbers up
/// to 2^53 in magnitude as digits, and any other number through the general canonicaliser
/// (which writes it as ECMAScript writes an IEEE double).
pub(crate) fn write_value(
    out: &mut Vec<u8>,
    value: &serde_json::Value,
) -> Result<(), serde_json::Error> {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) if u <= MAX_SAFE_INTEGER => {
                // Writing into a `Vec` cannot fail.
                let _ = write!(out, "{u}");
            }
            (None, Some(i)) if i.unsigned_abs() <= MAX_SAFE_INTEGER => {
                let _ = write!(out, "{i}");
            }
            _ => out.extend(serde_json_canonicalizer::to_vec(value)?),
        },
        Value::String(s) => serde_json::to_writer(&mut *out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            if members.iter().all(|(k, _)| k.is_ascii()) {
                // For ASCII, UTF-16 code unit order is byte order.
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            } else {
                members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_value(out, v)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(v: &serde_json::Value) -> (String, String) {
        let mut out = Vec::new();
        write_value(&mut out, v).unwrap_or_else(|e| panic!("{e}"));
        let general = serde_json_canonicalizer::to_vec(v).unwrap_or_else(|e| panic!("{e}"));
        (
            String::from_utf8(out).unwrap_or_default(),
            String::from_utf8(general).unwrap_or_default(),
        )
    }

    /// The cases where RFC 8785 differs from plain `serde_json` output: member order (by UTF-16
    /// code units, where a character beyond U+FFFF sorts before U+E000–U+FFFF), numbers beyond
    /// 2^53 and fractions, escapes.
    #[test]
    fn detail_values_are_written_as_the_general_canonicaliser_writes_them() {
        let cases = [
            json!({"b": 1, "a": [true, null, "x"], "A": {"z": -3, "y": 0}}),
            json!({"\u{ff61}": 1, "\u{1F600}": 2, "\u{e9}": 3, "e": 4}),
            json!([
                9007199254740991u64,
                9007199254740992u64,
                u64::MAX,
                -9007199254740991i64,
                -9007199254740993i64,
                i64::MIN,
                1.5,
                -0.0,
                1e21,
                1e-7,
                0.1
            ]),
            json!({"s": "\u{0}\u{1f}\"\\/\u{7f}\u{2028}\u{e9}"}),
            json!({}),
            json!([]),
        ];
        for v in &cases {
            let (ours, general) = both(v);
            assert_eq!(ours, general, "{v}");
        }
        // The members are sorted, not left in insertion order.
        assert_eq!(both(&json!({"b": 1, "a": 2})).0, r#"{"a":2,"b":1}"#);
    }
}
