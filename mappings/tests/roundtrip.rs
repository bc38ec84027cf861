//! Round trips through the force wire formats, for every document the generators make:
//! NMPP case record → Athena `CrimeRecord` XML → NMPP case record, and NMPP command-and-control
//! incident → STORM `IncidentMessage` XML → NMPP incident. The specs in each direction are
//! written independently, so a mismatch in any code table or field shows up here.

use mappings::Mappings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn mappings() -> &'static Mappings {
    static M: std::sync::OnceLock<Mappings> = std::sync::OnceLock::new();
    M.get_or_init(|| Mappings::builtin().unwrap_or_else(|e| panic!("{e}")))
}

/// Text with markup characters, never blank at either end.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 .,'&<>/()-]{0,24}[A-Za-z0-9.]"
}

fn word() -> impl Strategy<Value = String> {
    "[A-Z][a-z]{1,9}"
}

fn time() -> impl Strategy<Value = String> {
    (
        2020_u32..2030,
        1_u32..13,
        1_u32..29,
        0_u32..24,
        0_u32..60,
        prop_oneof![Just(None), (1_u32..999_999).prop_map(Some)],
    )
        .prop_map(|(y, mo, d, h, mi, frac)| {
            let base = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:07");
            match frac {
                Some(f) => format!("{base}.{}Z", format!("{f:06}").trim_end_matches('0')),
                None => format!("{base}Z"),
            }
        })
}

fn code(prefix: &'static str, n: u32) -> impl Strategy<Value = String> {
    (1..=n).prop_map(move |i| format!("{prefix}_{i:04}"))
}

fn officer() -> impl Strategy<Value = Value> {
    ("OFF-[0-9]{4}", "[0-9]{3,5}", code("RANK", 9), word(), word(), text()).prop_map(
        |(id, collar, rank, given, surname, station)| {
            json!({ "officerId": id, "collarNumber": collar, "rank": rank, "givenName": given, "surname": surname, "station": station })
        },
    )
}

const PUBLIC: [&str; 23] = [
    "under-investigation",
    "charged",
    "cautioned",
    "cautioned",
    "taken-into-consideration",
    "offender-deceased",
    "offender-given-penalty-notice",
    "offender-given-drugs-possession-warning",
    "local-resolution",
    "formal-action-not-in-public-interest",
    "formal-action-not-in-public-interest",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "unable-to-prosecute",
    "no-further-action",
    "action-taken-by-another-organisation",
    "action-taken-by-another-organisation",
    "further-investigation-not-in-public-interest",
    "local-resolution",
];

fn party(index: usize) -> impl Strategy<Value = Value> {
    let roles = proptest::sample::subsequence(
        vec![
            "victim",
            "witness",
            "personReporting",
            "guardian",
            "knownSuspect",
            "other",
        ],
        1..=3,
    );
    let gender = (1_u32..=10)
        .prop_filter("GNDR_0007 reads back as GNDR_0006", |g| *g != 7)
        .prop_map(|g| format!("GNDR_{g:04}"));
    (
        roles,
        proptest::collection::vec(word(), 1..3),
        word(),
        proptest::option::of(gender),
        proptest::option::of(code("CPNC", 3)),
        proptest::option::of(any::<bool>()),
        proptest::option::of((word(), "[A-Z]{2}[0-9] [0-9][A-Z]{2}")),
        proptest::option::of("[a-z]{1,8}@example\\.org"),
    )
        .prop_map(
            move |(roles, given, surname, gender, pref, under18, address, email)| {
                let mut person = Map::new();
                person.insert("givenNames".into(), json!(given));
                person.insert("surname".into(), json!(surname));
                if let Some(u) = under18 {
                    person.insert("under18".into(), json!(u));
                }
                if let Some(g) = gender {
                    person.insert("gender".into(), json!(g));
                }
                if let Some(p) = pref {
                    person.insert("contactPreference".into(), json!(p));
                }
                let mut party =
                    json!({ "id": format!("P-{index}"), "roles": roles, "person": person });
                let mut contact = Map::new();
                if let Some((street, postcode)) = address {
                    contact.insert(
                        "addresses".into(),
                        json!([{ "use": "current", "street": street, "postcode": postcode }]),
                    );
                }
                if let Some(e) = email {
                    contact.insert(
                        "emails".into(),
                        json!([{ "address": e, "use": "personal" }]),
                    );
                }
                if !contact.is_empty() {
                    party["contact"] = Value::Object(contact);
                }
                party
            },
        )
}

fn case() -> impl Strategy<Value = Value> {
    let timeline_entry = (
        time(),
        prop_oneof![
            Just("recorded"),
            Just("allocated"),
            Just("oicChanged"),
            Just("statusChanged"),
            Just("outcomeAssigned"),
            Just("victimContacted"),
            Just("update")
        ],
        proptest::option::of(text()),
    )
        .prop_map(|(at, t, d)| {
            let mut e = json!({ "at": at, "type": t });
            if let Some(d) = d {
                e["description"] = json!(d);
            }
            e
        });
    (
        ("[0-9]{2}/[0-9]{5}/[0-9]{2}", 1_u32..999, time(), code("CSTS", 6), time()),
        proptest::option::of((0_usize..23, time())),
        proptest::option::of(officer()),
        proptest::option::of(officer()),
        (0_usize..4).prop_flat_map(|n| (0..n).map(party).collect::<Vec<_>>()),
        proptest::collection::vec(timeline_entry, 0..4),
        proptest::option::of(Just("0b9f6f0e-3c6f-4c55-9a7e-3d3b1d0f0a01")),
    )
        .prop_map(|((reference, force, recorded, status, changed), outcome, oic, sup, parties, timeline, submission)| {
            let mut doc = json!({
                "modelVersion": "1.0.0", "crimeReference": reference, "forceIdentifier": force,
                "recordedAt": recorded, "status": status, "statusChangedAt": changed,
            });
            if let Some(s) = submission {
                doc["submissionId"] = json!(s);
            }
            if let Some((code, at)) = outcome {
                doc["outcome"] = json!({ "code": code.to_string(), "publicCategory": PUBLIC[code], "assignedAt": at });
            }
            if let Some(o) = oic {
                doc["officerInCharge"] = o;
            }
            if let Some(s) = sup {
                doc["supervisor"] = s;
            }
            if !parties.is_empty() {
                doc["parties"] = json!(parties);
            }
            if !timeline.is_empty() {
                doc["timeline"] = json!(timeline);
            }
            doc
        })
}

fn incident() -> impl Strategy<Value = Value> {
    let entry = ("[0-9]{1,3}", time(), word(), text()).prop_map(
        |(id, at, author, t)| json!({ "entryId": id, "at": at, "author": author, "text": t }),
    );
    (
        ("[A-Z]{3}-[0-9]{6}", 1_u32..999, time(), any::<bool>(), word(), text()),
        (1_u32..=5, time()),
        proptest::option::of(("[0-9]{2}/[0-9]{5}/[0-9]{2}", word(), "[A-Z]{2}[0-9] [0-9][A-Z]{2}")),
        proptest::collection::vec(entry, 0..3),
        time(),
    )
        .prop_map(|((number, force, opened, closed, kind, summary), (grade, graded), extra, log, closed_at)| {
            let mut doc = json!({
                "modelVersion": "1.0.0", "incidentNumber": number, "forceIdentifier": force,
                "openedAt": opened, "status": if closed { "closed" } else { "open" },
                "type": kind.to_uppercase(), "summary": summary,
                "grading": { "raw": grade.to_string(), "normalised": format!("GRAD_{grade:04}"), "gradedAt": graded },
            });
            if closed {
                doc["closedAt"] = json!(closed_at);
                doc["closureCode"] = json!("NFA");
            }
            if let Some((crime, street, postcode)) = extra {
                doc["crimeReference"] = json!(crime);
                doc["location"] = json!({ "street": street, "postcode": postcode });
            }
            if !log.is_empty() {
                doc["log"] = json!(log);
            }
            doc
        })
}

/// Key order does not matter to NMPP consumers; compare as sorted JSON.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nmpp_case_to_athena_xml_and_back(doc in case()) {
        let m = mappings();
        mappings::model::validate_model("nmpp-case@1", &doc)
            .map_err(|e| TestCaseError::fail(format!("generator made an invalid case: {e:?}\n{doc}")))?;
        let xml = m.render(mappings::NMPP_CASE_TO_ATHENA, &doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = m.map_xml(mappings::ATHENA_TO_NMPP_CASE, &xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(canonical(&back), canonical(&doc), "through {}", xml);
    }

    #[test]
    fn nmpp_incident_to_storm_xml_and_back(doc in incident()) {
        let m = mappings();
        mappings::model::validate_model("nmpp-incident@1", &doc)
            .map_err(|e| TestCaseError::fail(format!("generator made an invalid incident: {e:?}")))?;
        let envelope = json!({ "messageId": "m-1", "messageType": "UPDATE", "sent": "2026-01-01T00:00:00Z", "incident": doc });
        let xml = m.render(mappings::NMPP_TO_STORM_MESSAGE, &envelope).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (root, tree) = mappings::xml::from_xml(&xml).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(root, "IncidentMessage");
        let back = m.map(mappings::STORM_TO_NMPP_INCIDENT, &tree["Incident"]).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(canonical(&back), canonical(&envelope["incident"]), "through {}", xml);
    }
}
