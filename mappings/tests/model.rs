//! The NMPP v1 model: schema files, code lists and Rust types agree.

use mappings::codelists;
use mappings::model::{self, Document, Role, SCHEMA_FILES};
use serde_json::{Value, json};

fn schema(name: &str) -> Value {
    let text = SCHEMA_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no schema file {name}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn schema_enums_equal_the_code_lists() {
    let common = schema("common.schema.json");
    for (def, list) in [
        ("gender", "GNDR"),
        ("contactPreference", "CPNC"),
        ("ethnicityGroup", "EGRP"),
        ("ethnicitySelfDefined", "ESDD"),
        ("involvement", "IVLD"),
        ("beforeWebsite", "BWST"),
        ("role", "ROLE"),
    ] {
        let in_schema: Vec<&str> = common["$defs"][def]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("$defs/{def} has no enum"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let in_list: Vec<&str> = codelists()
            .get(list)
            .unwrap_or_else(|| panic!("no list {list}"))
            .codes
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(
            in_schema, in_list,
            "common.schema.json $defs/{def} vs codelists {list}"
        );
    }
}

#[test]
fn every_schema_file_is_draft_2020_12_with_its_id() {
    for (name, _) in SCHEMA_FILES {
        let s = schema(name);
        assert_eq!(
            s["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert_eq!(s["$id"], format!("{}{name}", model::SCHEMA_BASE), "{name}");
    }
}

#[test]
fn role_enum_matches_the_rust_type() {
    let roles: Vec<Role> =
        serde_json::from_value(schema("common.schema.json")["$defs"]["role"]["enum"].clone())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(roles.len(), 7);
    assert_eq!(
        serde_json::to_value(Role::PersonReporting).unwrap_or_default(),
        json!("personReporting")
    );
}

fn minimal() -> Value {
    json!({
        "modelVersion": "1.0.0",
        "submission": { "submissionId": "8bf76cd6-ce3c-4862-bbf7-e8563b51cb2e", "forceIdentifier": 42 },
        "incident": {}
    })
}

#[test]
fn the_schema_accepts_a_minimal_document_and_types_read_it() {
    assert_eq!(model::validate(&minimal()), Ok(()));
    let doc: Document = serde_json::from_value(minimal()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc.submission.force_identifier, 42);
    assert_eq!(serde_json::to_value(&doc).unwrap_or_default(), minimal());
}

#[test]
fn the_schema_rejects_with_pointers() {
    let cases = [
        ("/submission/forceIdentifier", json!("42")),
        ("/submission/submissionId", json!("nope")),
        ("/modelVersion", json!("2.0.0")),
        ("/incident/occurrence", json!({ "from": "20/10/2022" })),
        ("/incident/occurrence", json!({ "endTime": "4pm" })),
        ("/parties", json!([{ "id": "p", "roles": [] }])),
        ("/parties", json!([{ "id": "p", "roles": ["hero"] }])),
        (
            "/parties",
            json!([{ "id": "p", "roles": ["victim"], "person": { "gender": "M" } }]),
        ),
        ("/attachments", json!([{ "sha256": "ABC" }])),
        (
            "/incident/location",
            json!({ "street": "x", "use": "current" }),
        ),
    ];
    for (pointer, value) in cases {
        let mut doc = minimal();
        let (parent, key) = pointer.rsplit_once('/').unwrap_or_default();
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .map(|o| o.insert(key.into(), value.clone()));
        let errors = model::validate(&doc)
            .err()
            .unwrap_or_else(|| panic!("{pointer} = {value} was accepted"));
        assert!(
            errors.iter().any(|e| e.pointer.starts_with(pointer)),
            "{pointer} = {value}: {errors:?}"
        );
    }
    // Unknown fields are not allowed: they belong in `extra`.
    let mut doc = minimal();
    doc["submission"]["colour"] = json!("red");
    assert!(model::validate(&doc).is_err());
    doc["submission"]
        .as_object_mut()
        .map(|o| o.remove("colour"));
    doc["submission"]["extra"] = json!({ "colour": "red" });
    assert_eq!(model::validate(&doc), Ok(()));
}
