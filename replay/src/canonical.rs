//! A direct writer of RFC 8785 (JCS) canonical JSON objects whose member names are fixed ASCII.
//!
//! The journal hashes every audit record twice as it appends it (the chain hash and the ledger
//! leaf), on the writer that every durable write waits for. The general canonicaliser
//! (`serde_json_canonicalizer`) buffers and sorts every member of every object it writes; for
//! a record whose member names are known in advance their order is known too, so the members
//! can be written straight out, in that order: `serde_json` escapes strings exactly as RFC 8785
//! does, and only free-form JSON values still go through the general canonicaliser. Callers
//! keep the general path as the reference, and tests check the two agree byte for byte.

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

    /// A free-form JSON member, through the general canonicaliser.
    pub(crate) fn value(
        &mut self,
        name: &'static str,
        value: &serde_json::Value,
    ) -> Result<(), serde_json::Error> {
        self.key(name);
        self.out.extend(serde_json_canonicalizer::to_vec(value)?);
        Ok(())
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
