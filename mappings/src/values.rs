//! Value coercions shared by [`validate_sdm`](crate::validate_sdm) and the mapping transforms,
//! so that whatever validation accepts, the mapping can convert.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use time::format_description::well_known::Rfc3339;

/// A boolean, or a string spelling one in any case (`"true"`, `"FALSE"`).
pub(crate) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A non-negative integer fitting `u32`, as a JSON number or a string of ASCII digits.
pub(crate) fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// An integer, as a JSON number without fraction or a string of digits with an optional `-`.
pub(crate) fn as_integer(v: &Value) -> Option<Value> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(v.clone()),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            // The guard above keeps the value exactly representable.
            .map(|f| Value::from(f as i64)),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<i64>()
                .map(Value::from)
                .ok()
                .or_else(|| s.parse::<u64>().map(Value::from).ok())
        }
        _ => None,
    }
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => None,
    }
}

/// `YYYY-MM-DD`, a real calendar date.
pub(crate) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y1), Some(y2), Some(m), Some(d)) = (
        two_digits(&b[0..2]),
        two_digits(&b[2..4]),
        two_digits(&b[5..7]),
        two_digits(&b[8..10]),
    ) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(m as u8) else {
        return false;
    };
    time::Date::from_calendar_date((y1 * 100 + y2) as i32, month, d as u8).is_ok()
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff` (a time of day without offset).
pub(crate) fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    let hm = b.len() >= 5
        && b[2] == b':'
        && two_digits(&b[0..2]).is_some_and(|h| h < 24)
        && two_digits(&b[3..5]).is_some_and(|m| m < 60);
    if !hm {
        return false;
    }
    match b.len() {
        5 => true,
        8 => b[5] == b':' && two_digits(&b[6..8]).is_some_and(|s| s <= 60),
        n if n > 9 => {
            b[5] == b':'
                && two_digits(&b[6..8]).is_some_and(|s| s <= 60)
                && b[8] == b'.'
                && b[9..].iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// An RFC 3339 date-time with offset.
pub(crate) fn is_rfc3339(s: &str) -> bool {
    plain_rfc3339(s.as_bytes()) || time::OffsetDateTime::parse(s, &Rfc3339).is_ok()
}

/// Whether `b` is an RFC 3339 date-time in its everyday shape, `YYYY-MM-DDTHH:MM:SS`, an
/// optional fraction of 1-9 digits, then `Z` or `+HH:MM`/`-HH:MM`, with a real calendar date
/// in the years 1000-8999 and every field in range: all of which the `time` crate accepts.
/// `false` means "not this shape", not "invalid": [`is_rfc3339`] then asks `time`.
fn plain_rfc3339(b: &[u8]) -> bool {
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let Ok(date) = std::str::from_utf8(&b[..10]) else {
        return false;
    };
    if !matches!(b[0], b'1'..=b'8') || !is_date(date) {
        return false;
    }
    let fields_ok = two_digits(&b[11..13]).is_some_and(|h| h < 24)
        && two_digits(&b[14..16]).is_some_and(|m| m < 60)
        && two_digits(&b[17..19]).is_some_and(|s| s < 60);
    if !fields_ok {
        return false;
    }
    let mut rest = &b[19..];
    if let [b'.', digits @ ..] = rest {
        let n = digits.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &digits[n..];
    }
    match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            two_digits(&[*h1, *h2]).is_some_and(|h| h < 24)
                && two_digits(&[*m1, *m2]).is_some_and(|m| m < 60)
        }
        _ => false,
    }
}

/// A hyphenated UUID (`8bf76cd6-ce3c-4862-bbf7-e8563b51cb2e`).
pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// `YYYY-MM-DD` from a date or an RFC 3339 date-time.
pub(crate) fn to_date(s: &str) -> Option<&str> {
    if is_date(s) {
        Some(s)
    } else if is_rfc3339(s) {
        s.get(..10)
    } else {
        None
    }
}

/// A time of day as `HH:MM:SS[.fff]` (`HH:MM` gains `:00`); an RFC 3339 date-time is kept.
pub(crate) fn to_time(s: &str) -> Option<Cow<'_, str>> {
    if is_time(s) {
        if s.len() == 5 {
            Some(Cow::Owned(format!("{s}:00")))
        } else {
            Some(Cow::Borrowed(s))
        }
    } else if is_rfc3339(s) {
        Some(Cow::Borrowed(s))
    } else {
        None
    }
}

fn is_b64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// The decoded length of standard, padded base64 (ASCII whitespace such as MIME line breaks
/// is ignored), or `None` when it is not well-formed.
pub(crate) fn base64_len(s: &str) -> Option<usize> {
    let mut n = 0usize;
    let mut pad = 0usize;
    for b in s.bytes() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if b == b'=' {
            pad += 1;
        } else if pad > 0 || !is_b64_byte(b) {
            return None;
        }
        n += 1;
    }
    if !n.is_multiple_of(4) || pad > 2 {
        return None;
    }
    Some(n / 4 * 3 - pad)
}

/// Decodes standard, padded base64, ignoring ASCII whitespace.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    if s.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        engine.decode(compact).ok()
    } else {
        engine.decode(s).ok()
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The text form of a scalar (strings as they are, numbers and booleans as JSON writes them).
pub(crate) fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(match n.as_u64() {
            Some(u) => decimal(u),
            None => n.to_string(),
        })),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// `n` in decimal, as JSON writes it (without the formatting machinery of `to_string`).
pub(crate) fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[start..].iter().map(|&d| char::from(d)).collect()
}

/// Whether a value counts as absent for mapping purposes: `null` or an empty string.
pub(crate) fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_accept_string_spellings() {
        assert_eq!(as_bool(&json!(true)), Some(true));
        assert_eq!(as_bool(&json!("FALSE")), Some(false));
        assert_eq!(as_bool(&json!("True")), Some(true));
        assert_eq!(as_bool(&json!("yes")), None);
        assert_eq!(as_bool(&json!(1)), None);
    }

    #[test]
    fn u32_from_number_or_digits() {
        assert_eq!(as_u32(&json!(42)), Some(42));
        assert_eq!(as_u32(&json!("42")), Some(42));
        assert_eq!(as_u32(&json!("4294967296")), None);
        assert_eq!(as_u32(&json!("-1")), None);
        assert_eq!(as_u32(&json!(" 42")), None);
        assert_eq!(as_u32(&json!(4.5)), None);
    }

    #[test]
    fn integers() {
        assert_eq!(as_integer(&json!("-12")), Some(json!(-12)));
        assert_eq!(as_integer(&json!(3.0)), Some(json!(3)));
        assert_eq!(as_integer(&json!(3.5)), None);
        assert_eq!(as_integer(&json!("1e3")), None);
    }

    #[test]
    fn dates_and_times() {
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("2023-2-28"));
        assert!(is_time("16:00:00"));
        assert!(is_time("16:00"));
        assert!(is_time("16:00:00.123"));
        assert!(!is_time("24:00:00"));
        assert!(!is_time("16:00:00."));
        assert!(is_rfc3339("2023-06-12T15:09:33.880+01:00"));
        assert!(!is_rfc3339("2023-06-12 15:09"));
        assert!(is_rfc3339("2023-06-12T15:09:33Z"));
        assert!(is_rfc3339("2023-06-12T15:09:33.123456789-05:30"));
        assert!(!is_rfc3339("2023-02-29T15:09:33Z"));
        assert!(!is_rfc3339("2023-06-12T24:09:33Z"));
        assert!(!is_rfc3339("2023-06-12T15:09:33"));
        assert!(!is_rfc3339("2023-06-12T15:09:33.Z"));
        assert!(!is_rfc3339("2023-06-12T15:09:33+24:00"));
        assert!(!is_rfc3339("2023-06-12T15:09:33Zx"));
        assert_eq!(to_date("2023-06-12T15:09:33Z"), Some("2023-06-12"));
        assert_eq!(to_time("16:00").as_deref(), Some("16:00:00"));
        assert_eq!(to_time("4pm"), None);
    }

    /// The shortcut of `is_rfc3339` answers exactly as the `time` crate does.
    #[test]
    fn rfc3339_shortcut_agrees_with_time() {
        let mut checked = 0;
        for date in [
            "2023-06-12",
            "2024-02-29",
            "2023-02-29",
            "1000-01-01",
            "0999-12-31",
            "9999-12-31",
            "2023-13-01",
            "2023-00-10",
        ] {
            for sep in ["T", "t", " "] {
                for time_of_day in [
                    "00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "1:00:00", "12:00",
                ] {
                    for frac in ["", ".", ".1", ".123456789", ".1234567891", ".x"] {
                        for zone in [
                            "Z", "z", "+00:00", "-05:30", "+23:59", "+24:00", "-00:60", "+0100",
                            "", "Z ",
                        ] {
                            let s = format!("{date}{sep}{time_of_day}{frac}{zone}");
                            let by_time = time::OffsetDateTime::parse(&s, &Rfc3339).is_ok();
                            assert_eq!(is_rfc3339(&s), by_time, "{s}");
                            assert!(!plain_rfc3339(s.as_bytes()) || by_time, "{s}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 3 * 7 * 6 * 10);
    }

    #[test]
    fn numbers_as_text_as_json_writes_them() {
        for n in [
            json!(0),
            json!(7),
            json!(10),
            json!(u64::MAX),
            json!(-12),
            json!(2.5),
        ] {
            assert_eq!(scalar_text(&n).as_deref(), Some(n.to_string().as_str()));
        }
    }

    #[test]
    fn base64_length_and_hash() {
        assert_eq!(base64_len("aGVsbG8="), Some(5));
        assert_eq!(base64_len("aGVs\nbG8="), Some(5));
        assert_eq!(base64_len("aGVsbG8"), None);
        assert_eq!(base64_len("aG=sbG8="), None);
        let bytes = base64_decode("aGVs\r\nbG8=").unwrap_or_default();
        assert_eq!(bytes, b"hello");
        assert_eq!(
            sha256_hex(&bytes),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
