//! `validate_sdm`: every rule, with the field, rule name and pointer asserted. Every case runs
//! through both entry points — over a `serde_json::Value`, and over the document's text parsed
//! with `Source::parse` (`validate_sdm_source`, as the gateway runs it) — which must agree.

use mappings::{FieldError, SdmFacts, Source};
use serde_json::{Value, json};

/// Both entry points over `doc`, checked to give the same answer; that answer.
fn validate_sdm(doc: &Value) -> Result<SdmFacts, Vec<FieldError>> {
    let by_value = mappings::validate_sdm(doc);
    let text = serde_json::to_vec(doc).unwrap_or_else(|e| panic!("{e}"));
    let source = Source::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let by_source = mappings::validate_sdm_source(&source);
    assert_eq!(
        by_value, by_source,
        "the two entry points disagree on {doc}"
    );
    by_value
}

const SUBMISSION_ID: &str = "8bf76cd6-ce3c-4862-bbf7-e8563b51cb2e";

/// A small valid document: incident → victim person (with address) + submission.
fn doc() -> Value {
    json!({
        "data": {
            "id": "i1", "type": "incident",
            "attributes": { "incidentDescription": "d", "hadWeapon": "FALSE" },
            "relationships": {
                "victim": { "data": [ { "id": "p1", "type": "person" } ] },
                "submission": { "data": [ { "id": "s1", "type": "submission" } ] }
            }
        },
        "included": [
            { "id": "p1", "type": "person",
              "attributes": { "givenName": ["A"], "surname": "B", "gender": "GNDR_0001" },
              "relationships": { "currentAddress": { "data": [ { "id": "l1", "type": "location" } ] } } },
            { "id": "l1", "type": "location", "attributes": { "postcode": "AB1 2CD" } },
            { "id": "s1", "type": "submission",
              "attributes": { "submissionId": SUBMISSION_ID, "forceIdentifier": "42",
                              "submitTime": "2023-06-12T15:09:33.880+01:00",
                              "customerReferenceNumber": "TYA-1" } }
        ]
    })
}

fn errors(doc: &Value) -> Vec<FieldError> {
    match validate_sdm(doc) {
        Ok(facts) => panic!("expected errors, got {facts:?}"),
        Err(e) => e,
    }
}

/// `(field, rule, pointer)` of each error.
fn summary(doc: &Value) -> Vec<(String, String, String)> {
    errors(doc)
        .into_iter()
        .map(|e| (e.field, e.rule, e.pointer))
        .collect()
}

fn one(field: &str, rule: &str, pointer: &str) -> Vec<(String, String, String)> {
    vec![(field.into(), rule.into(), pointer.into())]
}

/// Sets (or adds) the value at `pointer`.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap_or_default();
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no {parent}"))
        .insert(key.into(), value);
}

/// Appends an entity to `included`.
fn push_included(doc: &mut Value, entity: Value) {
    doc["included"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("no included"))
        .push(entity);
}

fn remove(doc: &mut Value, pointer: &str, key: &str) {
    doc.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key))
        .unwrap_or_else(|| panic!("no {pointer}/{key}"));
}

#[test]
fn accepts_a_valid_document_and_returns_its_facts() {
    assert_eq!(
        validate_sdm(&doc()),
        Ok(SdmFacts {
            submission_id: SUBMISSION_ID.into(),
            force_identifier: 42,
            customer_reference: Some("TYA-1".into()),
        })
    );
}

#[test]
fn accepts_both_published_examples() {
    let skeleton: Value =
        serde_json::from_str(include_str!("cases/skeleton/input.json")).unwrap_or_default();
    let ocr: Value = serde_json::from_str(include_str!("cases/online-crime-report/input.json"))
        .unwrap_or_default();
    let facts = validate_sdm(&skeleton).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(facts.submission_id, "8bf76cd6-ce3c-4862-bbf7-e8563b51cb2e");
    assert_eq!(facts.force_identifier, 42);
    assert_eq!(
        facts.customer_reference.as_deref(),
        Some("TYA-1-23-0100-000")
    );
    let facts = validate_sdm(&ocr).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(facts.force_identifier, 42);
}

#[test]
fn top_level_must_be_a_document() {
    assert_eq!(summary(&json!([1, 2])), one("document", "type", ""));
    let e = errors(&json!("x"));
    assert!(e[0].message.contains("not a string"), "{}", e[0].message);
}

#[test]
fn data_must_be_an_incident() {
    let mut d = doc();
    remove(&mut d, "", "data");
    assert_eq!(summary(&d), one("data", "required", "/data"));

    let mut d = doc();
    set(&mut d, "/data/type", json!("person"));
    assert_eq!(summary(&d), one("data.type", "type", "/data/type"));

    let mut d = doc();
    set(&mut d, "/data", json!([]));
    assert_eq!(summary(&d), one("data", "type", "/data"));
}

#[test]
fn included_must_hold_exactly_one_submission() {
    let mut d = doc();
    remove(&mut d, "", "included");
    let s = summary(&d);
    assert!(
        s.contains(&("submission".into(), "required".into(), "/included".into())),
        "{s:?}"
    );

    let mut d = doc();
    let extra = json!({ "id": "s2", "type": "submission",
        "attributes": { "submissionId": SUBMISSION_ID, "forceIdentifier": 1 } });
    push_included(&mut d, extra);
    assert_eq!(summary(&d), one("submission", "unique", "/included/3"));

    let mut d = doc();
    set(&mut d, "/included", json!({}));
    let s = summary(&d);
    assert!(
        s.contains(&("included".into(), "type".into(), "/included".into())),
        "{s:?}"
    );
}

#[test]
fn submission_id_is_a_required_uuid() {
    let mut d = doc();
    remove(&mut d, "/included/2/attributes", "submissionId");
    assert_eq!(
        summary(&d),
        one(
            "submission.attributes.submissionId",
            "required",
            "/included/2/attributes/submissionId"
        )
    );

    let mut d = doc();
    set(
        &mut d,
        "/included/2/attributes/submissionId",
        json!("not-a-uuid"),
    );
    let e = errors(&d);
    assert_eq!(e[0].field, "submission.attributes.submissionId");
    assert_eq!(e[0].rule, "uuid");
    assert!(e[0].message.contains("UUID"), "{}", e[0].message);

    let mut d = doc();
    set(&mut d, "/included/2/attributes/submissionId", json!(12));
    assert_eq!(summary(&d)[0].1, "type");
}

#[test]
fn force_identifier_is_a_u32_as_number_or_digits() {
    for ok in [json!(42), json!("42"), json!(0), json!("4294967295")] {
        let mut d = doc();
        set(&mut d, "/included/2/attributes/forceIdentifier", ok.clone());
        assert!(validate_sdm(&d).is_ok(), "{ok} should be accepted");
    }
    for bad in [
        json!("42a"),
        json!(-1),
        json!(4.5),
        json!("4294967296"),
        json!(true),
        json!(""),
    ] {
        let mut d = doc();
        set(
            &mut d,
            "/included/2/attributes/forceIdentifier",
            bad.clone(),
        );
        assert_eq!(
            summary(&d),
            one(
                "submission.attributes.forceIdentifier",
                "type",
                "/included/2/attributes/forceIdentifier"
            ),
            "{bad}"
        );
    }
    let mut d = doc();
    remove(&mut d, "/included/2/attributes", "forceIdentifier");
    assert_eq!(summary(&d)[0].1, "required");
}

#[test]
fn submit_time_is_rfc3339() {
    let mut d = doc();
    set(
        &mut d,
        "/included/2/attributes/submitTime",
        json!("12/06/2023 15:09"),
    );
    let e = errors(&d);
    assert_eq!(
        (e[0].field.as_str(), e[0].rule.as_str()),
        ("submission.attributes.submitTime", "rfc3339")
    );
    assert_eq!(
        e[0].message,
        "submission.attributes.submitTime must be an RFC 3339 date-time"
    );
}

#[test]
fn dangling_reference_names_the_pointer() {
    let mut d = doc();
    set(
        &mut d,
        "/data/relationships/victim/data/0/id",
        json!("ghost"),
    );
    let e = errors(&d);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].pointer, "/data/relationships/victim/data/0");
    assert_eq!(e[0].field, "incident.relationships.victim");
    assert_eq!(e[0].rule, "reference");
    assert!(e[0].message.contains("person ghost"), "{}", e[0].message);

    // A reference from an included entity, to the wrong type.
    let mut d = doc();
    set(
        &mut d,
        "/included/0/relationships/currentAddress/data/0/type",
        json!("email"),
    );
    assert_eq!(
        summary(&d),
        one(
            "person.relationships.currentAddress",
            "reference",
            "/included/0/relationships/currentAddress/data/0"
        )
    );
}

#[test]
fn malformed_linkage_is_named() {
    let mut d = doc();
    set(
        &mut d,
        "/data/relationships/victim",
        json!([{ "id": "p1", "type": "person" }]),
    );
    assert_eq!(
        summary(&d),
        one(
            "incident.relationships.victim",
            "type",
            "/data/relationships/victim"
        )
    );

    let mut d = doc();
    set(&mut d, "/data/relationships/victim", json!({ "links": {} }));
    assert_eq!(
        summary(&d),
        one(
            "incident.relationships.victim",
            "required",
            "/data/relationships/victim/data"
        )
    );

    let mut d = doc();
    set(
        &mut d,
        "/data/relationships/victim/data/0",
        json!({ "id": "p1" }),
    );
    assert_eq!(
        summary(&d),
        one(
            "incident.relationships.victim.type",
            "required",
            "/data/relationships/victim/data/0/type"
        )
    );

    let mut d = doc();
    set(&mut d, "/data/relationships/victim/data", json!("p1"));
    assert_eq!(
        summary(&d),
        one(
            "incident.relationships.victim",
            "type",
            "/data/relationships/victim/data"
        )
    );

    // A to-one linkage object and an empty (null) linkage are fine.
    let mut d = doc();
    set(
        &mut d,
        "/data/relationships/victim/data",
        json!({ "id": "p1", "type": "person" }),
    );
    assert!(validate_sdm(&d).is_ok());
    set(&mut d, "/data/relationships/victim/data", Value::Null);
    assert!(validate_sdm(&d).is_ok());
}

#[test]
fn coded_values_must_be_in_their_lists() {
    let cases = [
        (
            "/included/0/attributes/gender",
            "GNDR_0011",
            "person.attributes.gender",
            "GNDR",
        ),
        (
            "/included/0/attributes/contactPreference",
            "CPNC_0009",
            "person.attributes.contactPreference",
            "CPNC",
        ),
        (
            "/included/0/attributes/ethnicityGroup",
            "EGRP_0000",
            "person.attributes.ethnicityGroup",
            "EGRP",
        ),
        (
            "/included/0/attributes/ethnicitySelfDefined",
            "W1",
            "person.attributes.ethnicitySelfDefined",
            "ESDD",
        ),
        (
            "/data/attributes/howInvolvedInCrime",
            "IVLD_0005",
            "incident.attributes.howInvolvedInCrime",
            "IVLD",
        ),
        (
            "/data/attributes/incidentInvolvement",
            "victim",
            "incident.attributes.incidentInvolvement",
            "IVLD",
        ),
        (
            "/data/attributes/beforeWebsite",
            "BWST_0006",
            "incident.attributes.beforeWebsite",
            "BWST",
        ),
    ];
    for (pointer, value, field, list) in cases {
        let mut d = doc();
        set(&mut d, pointer, json!(value));
        let e = errors(&d);
        assert_eq!(e.len(), 1, "{pointer}: {e:?}");
        assert_eq!(
            (
                e[0].field.as_str(),
                e[0].rule.as_str(),
                e[0].pointer.as_str()
            ),
            (field, "codelist", pointer)
        );
        assert!(
            e[0].message.contains(&format!("code list {list}")),
            "{}",
            e[0].message
        );
        assert!(e[0].message.contains(value), "{}", e[0].message);
    }
}

#[test]
fn type_errors_name_the_field_and_expected_type() {
    let mut d = doc();
    set(&mut d, "/included/0/attributes/surname", json!(7));
    let e = errors(&d);
    assert_eq!(
        (e[0].field.as_str(), e[0].rule.as_str()),
        ("person.attributes.surname", "type")
    );
    assert_eq!(
        e[0].message,
        "person.attributes.surname must be a string, not a number"
    );

    let mut d = doc();
    set(&mut d, "/included/0/attributes/givenName", json!([1]));
    assert_eq!(
        summary(&d),
        one(
            "person.attributes.givenName",
            "type",
            "/included/0/attributes/givenName"
        )
    );

    let mut d = doc();
    set(&mut d, "/data/attributes/hadWeapon", json!("maybe"));
    assert_eq!(
        summary(&d),
        one(
            "incident.attributes.hadWeapon",
            "type",
            "/data/attributes/hadWeapon"
        )
    );

    let mut d = doc();
    set(&mut d, "/included/0/attributes", json!("x"));
    assert_eq!(
        summary(&d),
        one("person.attributes", "type", "/included/0/attributes")
    );

    let mut d = doc();
    set(
        &mut d,
        "/included/0/attributes/dateOfBirth",
        json!("01/01/2000"),
    );
    assert_eq!(
        summary(&d),
        one(
            "person.attributes.dateOfBirth",
            "date",
            "/included/0/attributes/dateOfBirth"
        )
    );

    let mut d = doc();
    set(
        &mut d,
        "/data/attributes/incidentStartDateTime",
        json!({ "dateFrom": "yesterday" }),
    );
    assert_eq!(
        summary(&d),
        one(
            "incident.attributes.incidentStartDateTime.dateFrom",
            "date",
            "/data/attributes/incidentStartDateTime/dateFrom"
        )
    );

    let mut d = doc();
    set(&mut d, "/data/attributes/incidentEndDateTime", json!("4pm"));
    assert_eq!(
        summary(&d),
        one(
            "incident.attributes.incidentEndDateTime",
            "time",
            "/data/attributes/incidentEndDateTime"
        )
    );
}

#[test]
fn entity_structure_errors() {
    let mut d = doc();
    remove(&mut d, "/included/1", "id");
    let s = summary(&d);
    assert!(
        s.contains(&(
            "location.id".into(),
            "required".into(),
            "/included/1/id".into()
        )),
        "{s:?}"
    );

    let mut d = doc();
    set(&mut d, "/included/1", json!(5));
    let s = summary(&d);
    assert!(
        s.contains(&("included[1]".into(), "type".into(), "/included/1".into())),
        "{s:?}"
    );

    let mut d = doc();
    let dup = d["included"][1].clone();
    push_included(&mut d, dup);
    assert_eq!(summary(&d), one("location", "unique", "/included/3"));
}

#[test]
fn attachment_content_must_be_base64() {
    let mut d = doc();
    push_included(
        &mut d,
        json!({ "id": "a1", "type": "attachment",
            "attributes": { "attachmentName": "x", "attachmentContent": "not base64!" } }),
    );
    assert_eq!(
        summary(&d),
        one(
            "attachment.attributes.attachmentContent",
            "base64",
            "/included/3/attributes/attachmentContent"
        )
    );
}

#[test]
fn quirks_are_accepted() {
    let mut d = doc();
    let attrs = json!({
        "givenName": "Dave", "surname": "Jones", "dateofBirthKnown": "false",
        "dateOfBirthKnown": "TRUE", "under18": "False", "disability": "false",
        "shoeSize": 11, "favourite": { "colour": "blue" }
    });
    set(&mut d, "/included/0/attributes", attrs);
    set(
        &mut d,
        "/data/attributes/incidentEndDateTime",
        json!("16:00:00"),
    );
    set(
        &mut d,
        "/data/attributes/incidentAnyWitnesses",
        json!("true"),
    );
    set(&mut d, "/data/attributes/unknownThing", json!([1, 2, 3]));
    set(&mut d, "/included/2/attributes/forceIdentifier", json!(42));
    set(&mut d, "/included/2/attributes/highHarmFlag", json!("TRUE"));
    set(
        &mut d,
        "/included/1/attributes/UPRN",
        json!(100081234567_u64),
    );
    push_included(
        &mut d,
        json!({ "id": "v1", "type": "vehicle", "attributes": { "make": 3 } }),
    );
    assert!(validate_sdm(&d).is_ok(), "{:#?}", validate_sdm(&d));
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let mut d = doc();
    set(&mut d, "/included/0/attributes/gender", json!("GNDR_9"));
    set(&mut d, "/included/0/attributes/surname", json!(false));
    set(
        &mut d,
        "/included/2/attributes/submitTime",
        json!("yesterday"),
    );
    set(
        &mut d,
        "/data/relationships/victim/data/0/id",
        json!("nobody"),
    );
    let mut rules: Vec<String> = errors(&d).into_iter().map(|e| e.rule).collect();
    rules.sort();
    assert_eq!(rules, ["codelist", "reference", "rfc3339", "type"]);
}

#[test]
fn the_text_entry_point_reads_escapes_and_repeated_keys_as_serde_json_does() {
    // An escaped string (not borrowed from the text) and a repeated key (the last value wins,
    // as in a `serde_json::Value`): the first forceIdentifier is not a number, the last one is.
    let text = doc().to_string().replacen(
        "\"forceIdentifier\":\"42\"",
        "\"forceIdentifier\":\"x\",\"forceIdentifier\":\"4\\u0032\"",
        1,
    );
    assert!(text.contains("\\u0032"), "{text}");
    let source = Source::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let facts = mappings::validate_sdm_source(&source).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(facts.force_identifier, 42);
    // And the other way round: the last value is the bad one.
    let text = doc().to_string().replacen(
        "\"forceIdentifier\":\"42\"",
        "\"forceIdentifier\":\"42\",\"forceIdentifier\":[]",
        1,
    );
    let source = Source::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let errors = mappings::validate_sdm_source(&source)
        .err()
        .unwrap_or_default();
    assert_eq!(
        errors
            .iter()
            .map(|e| (e.field.as_str(), e.rule.as_str()))
            .collect::<Vec<_>>(),
        [("submission.attributes.forceIdentifier", "type")]
    );
}
