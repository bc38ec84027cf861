//! The engine's view of a source document: a borrowed tree ([`serde_json_borrow::Value`]) whose
//! strings point into the document text wherever they need no unescaping and whose objects
//! are member lists, not hashed maps.
//!
//! A mapping reads each source value a few times at most, so the hashed map and the owned
//! strings of a `serde_json::Value` cost more to build than they save. Text is parsed straight
//! into this tree ([`Source::parse`]); a `serde_json::Value` a caller already holds is read as
//! it is. The engine reads either through [`Tree`].
//!
//! JSON object keys are unique in a `serde_json::Value` (a repeated key keeps its first
//! position and its last value). The borrowed parser keeps every member as written, so a
//! document with a repeated key is parsed the `serde_json` way instead: both give the engine
//! the same tree.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};
#[cfg(test)]
use serde_json_borrow::ObjectAsVec;

/// A source value parsed from text ([`Source`]).
pub(crate) type In<'t> = serde_json_borrow::Value<'t>;

/// What the engine reads a source document through: a `serde_json::Value` a caller holds, or
/// the borrowed tree [`Source::parse`] makes. The engine is compiled for each, so neither is
/// converted into the other to be read. Both are written as XML alike (`XmlTree` for any
/// `Tree`).
pub(crate) trait Tree: Sized + std::fmt::Debug + serde::Serialize {
    /// `self[key]` when this is an object.
    fn member(&self, key: &str) -> Option<&Self>;
    /// The members, when this is an object.
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + Clone>;
    /// The items, when this is an array.
    fn items(&self) -> Option<&[Self]>;
    fn is_null(&self) -> bool;
    fn is_object(&self) -> bool;
    fn is_bool(&self) -> bool;
    fn as_str(&self) -> Option<&str>;
    /// The text of a string, number or boolean ([`crate::values::scalar_text`]).
    fn scalar_text(&self) -> Option<Cow<'_, str>>;
    /// [`crate::values::as_bool`].
    fn as_bool(&self) -> Option<bool>;
    /// [`crate::values::is_absent`]: `null` or an empty string.
    fn is_absent(&self) -> bool;
    /// As an owned `serde_json::Value`.
    fn to_json(&self) -> Value;
    /// This, when it is a `serde_json::Value` already.
    fn as_value(&self) -> Option<&Value>;
    /// Whether this is the same JSON value as `other` (object members in any order).
    fn same(&self, other: &Value) -> bool;
    /// [`crate::values::as_u32`]: a number or a string of digits fitting `u32`.
    fn as_u32(&self) -> Option<u32>;
    /// Whether this is a number without a fraction part (as parsed: `1.0` is not).
    fn is_integer(&self) -> bool;
    /// The JSON type, as an error message names it (`"a string"`).
    fn type_name(&self) -> &'static str;
}

/// Objects up to this many members are searched by scanning: for the small objects documents
/// are made of, comparing keys is cheaper than hashing the one looked for (serde_json's map
/// hashes with SipHash).
const SCAN_MEMBERS: usize = 32;

impl Tree for Value {
    #[inline]
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            Value::Object(map) if map.len() <= SCAN_MEMBERS => map
                .iter()
                .find_map(|(k, v)| crate::engine::same_key(k, key).then_some(v)),
            Value::Object(map) => map.get(key),
            _ => None,
        }
    }

    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + Clone> {
        self.as_object()
            .map(|map| map.iter().map(|(k, v)| (k.as_str(), v)))
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }

    fn is_null(&self) -> bool {
        Value::is_null(self)
    }

    fn is_object(&self) -> bool {
        Value::is_object(self)
    }

    fn is_bool(&self) -> bool {
        Value::is_boolean(self)
    }

    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }

    fn scalar_text(&self) -> Option<Cow<'_, str>> {
        crate::values::scalar_text(self)
    }

    fn as_bool(&self) -> Option<bool> {
        crate::values::as_bool(self)
    }

    fn is_absent(&self) -> bool {
        crate::values::is_absent(self)
    }

    fn to_json(&self) -> Value {
        self.clone()
    }

    fn as_value(&self) -> Option<&Value> {
        Some(self)
    }

    fn same(&self, other: &Value) -> bool {
        self == other
    }

    fn as_u32(&self) -> Option<u32> {
        crate::values::as_u32(self)
    }

    fn is_integer(&self) -> bool {
        self.is_i64() || self.is_u64()
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

impl Tree for In<'_> {
    #[inline]
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            In::Object(members) => members
                .iter()
                .find_map(|(k, v)| crate::engine::same_key(k, key).then_some(v)),
            _ => None,
        }
    }

    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + Clone> {
        match self {
            In::Object(members) => Some(members.as_vec().iter().map(|(k, v)| (&**k, v))),
            _ => None,
        }
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array()
    }

    fn is_null(&self) -> bool {
        In::is_null(self)
    }

    fn is_object(&self) -> bool {
        In::is_object(self)
    }

    fn is_bool(&self) -> bool {
        In::is_bool(self)
    }

    fn as_str(&self) -> Option<&str> {
        In::as_str(self)
    }

    fn scalar_text(&self) -> Option<Cow<'_, str>> {
        scalar_text(self)
    }

    fn as_bool(&self) -> Option<bool> {
        as_bool(self)
    }

    fn is_absent(&self) -> bool {
        is_absent(self)
    }

    fn to_json(&self) -> Value {
        to_json(self)
    }

    fn as_value(&self) -> Option<&Value> {
        None
    }

    fn same(&self, other: &Value) -> bool {
        same(self, other)
    }

    fn as_u32(&self) -> Option<u32> {
        match self {
            In::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            In::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        }
    }

    fn is_integer(&self) -> bool {
        matches!(self, In::Number(n) if n.is_i64() || n.is_u64())
    }

    fn type_name(&self) -> &'static str {
        match self {
            In::Null => "null",
            In::Bool(_) => "a boolean",
            In::Number(_) => "a number",
            In::Str(_) => "a string",
            In::Array(_) => "an array",
            In::Object(_) => "an object",
        }
    }
}

/// A parsed JSON source document, ready for [`Mappings::map_source`](crate::Mappings::map_source).
pub struct Source<'t>(Parsed<'t>);

pub(crate) enum Parsed<'t> {
    /// The usual case: borrowed from the text.
    Borrowed(In<'t>),
    /// A document with a repeated object key, parsed as `serde_json` does.
    Value(Value),
}

impl<'t> Source<'t> {
    /// Parses JSON text (UTF-8). Fails where `serde_json::from_slice::<Value>` fails.
    pub fn parse(text: &'t [u8]) -> Result<Self, serde_json::Error> {
        // Checked once here, the text is not checked again string by string.
        let Ok(text) = std::str::from_utf8(text) else {
            return serde_json::from_slice::<Value>(text).map(|v| Source(Parsed::Value(v)));
        };
        let tree: In<'t> = serde_json::from_str(text)?;
        if has_repeated_key(&tree) {
            return serde_json::from_str(text).map(|v| Source(Parsed::Value(v)));
        }
        Ok(Source(Parsed::Borrowed(tree)))
    }

    /// The document as it was parsed.
    pub(crate) fn parsed(&self) -> &Parsed<'t> {
        &self.0
    }
}

fn has_repeated_key(v: &In<'_>) -> bool {
    match v {
        In::Array(items) => items.iter().any(has_repeated_key),
        In::Object(members) => {
            let members = members.as_vec();
            repeated(members) || members.iter().any(|(_, v)| has_repeated_key(v))
        }
        _ => false,
    }
}

/// Objects up to this many members are checked pair by pair (most pairs differ in length).
const PAIRWISE: usize = 8;

/// Slots of the table [`repeated`] checks other small objects with (at most half are filled).
const SLOTS: usize = 64;

/// Whether two members of one object have the same key. The smallest objects are checked pair
/// by pair, small ones through a table on the stack (found by a cheap hash of the key's ends,
/// confirmed by comparing keys), larger ones through a `HashSet`.
fn repeated<V>(members: &[(serde_json_borrow::KeyStrType<'_>, V)]) -> bool {
    if members.len() < 2 {
        return false;
    }
    if members.len() <= PAIRWISE {
        return members.iter().enumerate().any(|(i, (key, _))| {
            members[i + 1..]
                .iter()
                .any(|(other, _)| crate::engine::same_key(key, other))
        });
    }
    if members.len() > SLOTS / 2 {
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        return !members.iter().all(|(k, _)| seen.insert(&**k));
    }
    let mut table = [u8::MAX; SLOTS];
    for (i, (key, _)) in members.iter().enumerate() {
        let mut slot = slot_of(key);
        loop {
            match table[slot] {
                u8::MAX => {
                    // i < SLOTS / 2: fits.
                    table[slot] = i as u8;
                    break;
                }
                j if crate::engine::same_key(&members[usize::from(j)].0, key) => return true,
                _ => slot = (slot + 1) % SLOTS,
            }
        }
    }
    false
}

/// A slot for `key` from its length and its first and last (up to) 8 bytes.
fn slot_of(key: &str) -> usize {
    let b = key.as_bytes();
    let word = |part: &[u8]| {
        let mut w = [0u8; 8];
        w[..part.len()].copy_from_slice(part);
        u64::from_le_bytes(w)
    };
    let n = b.len();
    let head = word(&b[..n.min(8)]);
    let tail = word(&b[n.saturating_sub(8)..]);
    let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 58) as usize
}

/// `v` as a borrowed tree, borrowing its strings.
#[cfg(test)]
fn view(v: &Value) -> In<'_> {
    match v {
        Value::Null => In::Null,
        Value::Bool(b) => In::Bool(*b),
        Value::Number(n) => In::Number(number_in(n)),
        Value::String(s) => In::Str(Cow::Borrowed(s)),
        Value::Array(items) => In::Array(items.iter().map(view).collect()),
        Value::Object(map) => In::Object(ObjectAsVec::from(
            map.iter()
                .map(|(k, v)| (k.as_str(), view(v)))
                .collect::<Vec<_>>(),
        )),
    }
}

#[cfg(test)]
fn number_in(n: &Number) -> serde_json_borrow::Number {
    if let Some(u) = n.as_u64() {
        u.into()
    } else if let Some(i) = n.as_i64() {
        i.into()
    } else {
        n.as_f64().unwrap_or_default().into()
    }
}

fn number_out(n: &serde_json_borrow::Number) -> Number {
    if let Some(u) = n.as_u64() {
        u.into()
    } else if let Some(i) = n.as_i64() {
        i.into()
    } else {
        // The parser keeps only finite floats.
        n.as_f64()
            .and_then(Number::from_f64)
            .unwrap_or_else(|| 0.into())
    }
}

/// `v` as an owned `serde_json::Value`.
pub(crate) fn to_json(v: &In<'_>) -> Value {
    match v {
        In::Null => Value::Null,
        In::Bool(b) => Value::Bool(*b),
        In::Number(n) => Value::Number(number_out(n)),
        In::Str(s) => Value::String(s.as_ref().to_owned()),
        In::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        In::Object(members) => {
            let mut map = Map::with_capacity(members.len());
            for (k, v) in members.iter() {
                map.insert(k.to_owned(), to_json(v));
            }
            Value::Object(map)
        }
    }
}

/// Whether `a` and `b` are the same JSON value (object members in any order).
pub(crate) fn same(a: &In<'_>, b: &Value) -> bool {
    match (a, b) {
        (In::Null, Value::Null) => true,
        (In::Bool(x), Value::Bool(y)) => x == y,
        (In::Number(x), Value::Number(y)) => number_out(x) == *y,
        (In::Str(x), Value::String(y)) => x.as_ref() == y.as_str(),
        (In::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (In::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

/// The text form of a scalar, as [`crate::values::scalar_text`] gives it for a `Value`.
pub(crate) fn scalar_text<'v>(v: &'v In<'_>) -> Option<Cow<'v, str>> {
    match v {
        In::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        In::Number(n) => match n.as_u64() {
            Some(u) => Some(Cow::Owned(crate::values::decimal(u))),
            None => Some(Cow::Owned(number_out(n).to_string())),
        },
        In::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// As [`crate::values::as_bool`].
pub(crate) fn as_bool(v: &In<'_>) -> Option<bool> {
    match v {
        In::Bool(b) => Some(*b),
        In::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        In::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// As [`crate::values::is_absent`]: `null` or an empty string.
pub(crate) fn is_absent(v: &In<'_>) -> bool {
    match v {
        In::Null => true,
        In::Str(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Value {
        match Source::parse(text.as_bytes()).map(|s| s.0) {
            Ok(Parsed::Borrowed(tree)) => to_json(&tree),
            Ok(Parsed::Value(v)) => v,
            Err(_) => Value::Null,
        }
    }

    #[test]
    fn text_and_value_give_the_same_tree() {
        let text = r#"{"a":1,"b":-2,"c":2.5,"d":"x\"y","e":[true,null,{"f":"g"}],"h":18446744073709551615}"#;
        let value: Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(parsed(text), value);
        assert!(same(&view(&value), &value));
        assert_eq!(to_json(&view(&value)), value);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        for text in [
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"x":[{"k":1,"k":2}]}"#,
            // Keys alike at both ends.
            r#"{"addr_town_of_x":1,"addr_uprn_of_x":2,"addr_town_of_x":3}"#,
            // Larger than the table.
            r#"{"a1":1,"a2":1,"a3":1,"a4":1,"a5":1,"a6":1,"a7":1,"a8":1,"a9":1,"b1":1,"b2":1,"b3":1,"b4":1,"b5":1,"b6":1,"b7":1,"b8":1,"b9":1,"c1":1,"c2":1,"c3":1,"c4":1,"c5":1,"c6":1,"c7":1,"c8":1,"c9":1,"d1":1,"d2":1,"d3":1,"d4":1,"d5":1,"d6":1,"a1":2}"#,
            r#"{"a1":1,"a2":1,"a3":1,"a4":1,"a5":1,"a6":1,"a7":1,"a8":1,"a9":1,"b1":1,"b2":1,"b3":1,"b4":1,"b5":1,"b6":1,"b7":1,"a1":2}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap_or_default();
            let ours = parsed(text);
            assert_eq!(ours, value, "{text}");
            assert_eq!(
                serde_json::to_string(&ours).unwrap_or_default(),
                serde_json::to_string(&value).unwrap_or_default()
            );
        }
    }

    #[test]
    fn distinct_keys_are_not_repeated() {
        let keys: Vec<String> = (0..40).map(|i| format!("addr_{i}_town")).collect();
        for n in [0, 1, 2, 16, 32, 33, 40] {
            let text = format!(
                "{{{}}}",
                keys[..n]
                    .iter()
                    .map(|k| format!("{k:?}:1"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let tree: In<'_> = serde_json::from_str(&text).unwrap_or_default();
            assert!(!has_repeated_key(&tree), "{n} keys");
            let twice = text.replacen('{', &format!("{{{:?}:2,", keys[n.saturating_sub(1)]), 1);
            let tree: In<'_> = serde_json::from_str(&twice).unwrap_or_default();
            assert_eq!(has_repeated_key(&tree), n > 0, "{n} keys and one again");
        }
    }

    #[test]
    fn scalars_read_as_the_value_helpers_read_them() {
        let value: Value =
            serde_json::from_str(r#"[1, -1, 1.5, 1e300, "t", "TRUE", false, "", null, 0]"#)
                .unwrap_or_default();
        let tree = view(&value);
        for (i, v) in value.as_array().into_iter().flatten().enumerate() {
            let t = &tree.as_array().unwrap_or_default()[i];
            assert_eq!(scalar_text(t), crate::values::scalar_text(v), "{v}");
            assert_eq!(as_bool(t), crate::values::as_bool(v), "{v}");
            assert_eq!(is_absent(t), crate::values::is_absent(v), "{v}");
            assert!(same(t, v), "{v}");
        }
    }

    #[test]
    fn malformed_text_is_an_error() {
        assert!(Source::parse(b"{\"a\":").is_err());
        assert!(Source::parse(b"[1,]").is_err());
        assert!(Source::parse(b"\xff").is_err());
    }
}
