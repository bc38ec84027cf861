//! Backward compatibility of a Live model version: a structural comparison of two sets of
//! JSON Schema files that lists every change that could make a document valid under the old
//! schema invalid under the new one, or take away a value a consumer relies on.
//!
//! Allowed (compatible) changes: new files, new optional properties, new `$defs`, new enum
//! values, relaxing `additionalProperties` from `false`, dropping a constraint, new
//! descriptions. Breaking: a file, property, `$defs` entry or enum value removed; a new
//! required property; a changed `type`, `$ref`, `const`, `format`, `pattern` or bound; a new
//! constraint on an existing schema; `additionalProperties` becoming `false`.

use serde_json::Value;

/// Keys whose value must not change or appear on an existing schema.
const FIXED: &[&str] = &[
    "type",
    "$ref",
    "const",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// Every breaking change from `old` to `new` (`(file name, text)` pairs), each naming the file
/// and the JSON Pointer of the schema that changed. Empty: `new` is compatible.
pub fn breaking_changes(old: &[(&str, &str)], new: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, old_text) in old {
        let Some((_, new_text)) = new.iter().find(|(n, _)| n == name) else {
            out.push(format!("{name}: the file was removed"));
            continue;
        };
        let parse = |t: &str| serde_json::from_str::<Value>(t);
        match (parse(old_text), parse(new_text)) {
            (Ok(a), Ok(b)) => compare(name, "", &a, &b, &mut out),
            (_, Err(e)) => out.push(format!("{name}: not JSON: {e}")),
            (Err(e), _) => out.push(format!("{name}: the old file is not JSON: {e}")),
        }
    }
    out
}

fn compare(file: &str, at: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        if old != new {
            out.push(format!("{file}#{at}: changed from {old} to {new}"));
        }
        return;
    };
    let here = |k: &str| format!("{at}/{k}");
    for key in FIXED {
        match (o.get(*key), n.get(*key)) {
            (Some(a), Some(b)) if a != b => {
                out.push(format!("{file}#{}: changed from {a} to {b}", here(key)));
            }
            (Some(_), None) => {}
            (None, Some(b)) => {
                out.push(format!("{file}#{}: new constraint {b}", here(key)));
            }
            _ => {}
        }
    }
    if let Some(Value::Array(old_enum)) = o.get("enum") {
        match n.get("enum") {
            Some(Value::Array(new_enum)) => {
                for v in old_enum {
                    if !new_enum.contains(v) {
                        out.push(format!("{file}#{}: value {v} was removed", here("enum")));
                    }
                }
            }
            _ => out.push(format!(
                "{file}#{}: the enum was removed or changed",
                here("enum")
            )),
        }
    } else if let Some(b) = n.get("enum") {
        out.push(format!("{file}#{}: new constraint {b}", here("enum")));
    }
    let required = |m: &serde_json::Map<String, Value>| -> Vec<Value> {
        m.get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let old_required = required(o);
    for r in required(n) {
        if !old_required.contains(&r) {
            out.push(format!(
                "{file}#{}: {r} is newly required",
                here("required")
            ));
        }
    }
    for key in ["additionalProperties", "unevaluatedProperties"] {
        match (o.get(key), n.get(key)) {
            (Some(Value::Bool(false)), _) => {}
            (None | Some(Value::Bool(true)), Some(Value::Bool(false))) => {
                out.push(format!("{file}#{}: now false", here(key)));
            }
            (Some(a), Some(b)) => compare(file, &here(key), a, b, out),
            _ => {}
        }
    }
    for key in ["properties", "$defs", "patternProperties"] {
        if let Some(Value::Object(old_props)) = o.get(key) {
            let new_props = n.get(key).and_then(Value::as_object);
            for (name, old_schema) in old_props {
                let path = format!(
                    "{}/{}",
                    here(key),
                    name.replace('~', "~0").replace('/', "~1")
                );
                match new_props.and_then(|p| p.get(name)) {
                    Some(new_schema) => compare(file, &path, old_schema, new_schema, out),
                    None => out.push(format!("{file}#{path}: was removed")),
                }
            }
        }
    }
    for key in ["items", "not", "if", "then", "else", "contains"] {
        match (o.get(key), n.get(key)) {
            (Some(a), Some(b)) => compare(file, &here(key), a, b, out),
            (Some(_), None) => {}
            (None, Some(b)) => out.push(format!("{file}#{}: new constraint {b}", here(key))),
            _ => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf", "prefixItems"] {
        match (o.get(key), n.get(key)) {
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                if key == "allOf" && b.len() > a.len() {
                    out.push(format!("{file}#{}: new constraints", here(key)));
                }
                if key != "allOf" && b.len() < a.len() {
                    out.push(format!("{file}#{}: alternatives were removed", here(key)));
                }
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    compare(file, &format!("{}/{i}", here(key)), x, y, out);
                }
            }
            (Some(_), None) => {}
            (None, Some(b)) => out.push(format!("{file}#{}: new constraint {b}", here(key))),
            (Some(a), Some(b)) if a != b => {
                out.push(format!("{file}#{}: changed", here(key)));
            }
            _ => {}
        }
    }
}
