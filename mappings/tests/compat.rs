//! NMPP model v1 is Live: it may only grow compatibly. The released 1.0.0 schema files are kept
//! under `schemas/nmpp/released/1.0.0/`; the current v1 files must be a compatible extension,
//! and every kind of breaking change is caught.

use mappings::model::{RELEASED_1_0_0, SCHEMA_FILES, compat::breaking_changes};
use serde_json::Value;

fn current() -> Vec<(&'static str, &'static str)> {
    SCHEMA_FILES.to_vec()
}

#[test]
fn v1_is_a_compatible_extension_of_the_released_1_0_0() {
    let problems = breaking_changes(RELEASED_1_0_0, &current());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `current()` with one file changed by `edit`.
fn with_edit(file: &str, edit: impl Fn(&mut Value)) -> Vec<(String, String)> {
    current()
        .into_iter()
        .map(|(name, text)| {
            if name == file {
                let mut v: Value = serde_json::from_str(text).unwrap_or_default();
                edit(&mut v);
                (name.to_owned(), v.to_string())
            } else {
                (name.to_owned(), text.to_owned())
            }
        })
        .collect()
}

fn breaks(file: &str, edit: impl Fn(&mut Value)) -> Vec<String> {
    let edited = with_edit(file, edit);
    let refs: Vec<(&str, &str)> = edited
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    breaking_changes(RELEASED_1_0_0, &refs)
}

#[test]
fn breaking_changes_to_a_live_schema_are_caught() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "removing a property",
            "submission.schema.json",
            Box::new(|v| {
                if let Some(p) = v["properties"].as_object_mut() {
                    p.remove("category");
                }
            }),
        ),
        (
            "a new required property",
            "submission.schema.json",
            Box::new(|v| {
                if let Some(r) = v["required"].as_array_mut() {
                    r.push("category".into());
                }
            }),
        ),
        (
            "removing an enum value",
            "common.schema.json",
            Box::new(|v| {
                if let Some(e) = v["$defs"]["gender"]["enum"].as_array_mut() {
                    e.pop();
                }
            }),
        ),
        (
            "changing a type",
            "attachment.schema.json",
            Box::new(|v| {
                v["properties"]["sizeBytes"]["type"] = "string".into();
            }),
        ),
        (
            "tightening a pattern",
            "document.schema.json",
            Box::new(|v| {
                v["properties"]["modelVersion"]["pattern"] = "^1\\.0\\.0$".into();
            }),
        ),
        (
            "closing an open object",
            "common.schema.json",
            Box::new(|v| {
                v["$defs"]["extra"]["additionalProperties"] = false.into();
            }),
        ),
        (
            "removing a $defs entry",
            "party.schema.json",
            Box::new(|v| {
                if let Some(d) = v["$defs"].as_object_mut() {
                    d.remove("contact");
                }
            }),
        ),
    ];
    for (what, file, edit) in cases {
        let problems = breaks(file, edit);
        assert!(!problems.is_empty(), "{what} in {file} was not reported");
        assert!(
            problems.iter().all(|p| p.starts_with(file)),
            "{what}: {problems:?}"
        );
    }
    // Removing a whole file is breaking too.
    let fewer: Vec<(&str, &str)> = current()
        .into_iter()
        .filter(|(n, _)| *n != "incident.schema.json")
        .collect();
    assert_eq!(
        breaking_changes(RELEASED_1_0_0, &fewer),
        ["incident.schema.json: the file was removed"]
    );
}

#[test]
fn compatible_changes_pass() {
    // A new optional property, a new enum value, a new $defs entry.
    let problems = breaks("common.schema.json", |v| {
        if let Some(e) = v["$defs"]["gender"]["enum"].as_array_mut() {
            e.push("GNDR_0011".into());
        }
        v["$defs"]["newThing"] = serde_json::json!({ "type": "string" });
    });
    assert!(problems.is_empty(), "{problems:?}");
    let problems = breaks("submission.schema.json", |v| {
        v["properties"]["channel"] = serde_json::json!({ "type": "string" });
    });
    assert!(problems.is_empty(), "{problems:?}");
}
