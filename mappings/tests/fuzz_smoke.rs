//! The fuzz targets' entry points (`mappings::fuzzing`) on stable: random bytes and mutated
//! golden inputs, a bounded number of cases each. A panic fails the test.

use mappings::fuzzing;
use proptest::prelude::*;

const SDM: &str = include_str!("cases/online-crime-report/input.json");
const ATHENA: &str = include_str!("cases/athena-case-read/input.xml");
const STORM: &str = include_str!("cases/storm-incident/input.xml");
const ROWS: &str = include_str!("cases/warehouse-case-rows/input.json");

/// A seed with some bytes replaced, some removed and some inserted.
fn mutated(seed: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        proptest::option::of((0..len, 0..64_usize)),
        proptest::option::of((0..len, proptest::collection::vec(any::<u8>(), 0..16))),
    )
        .prop_map(move |(flips, cut, insert)| {
            let mut bytes = seed.as_bytes().to_vec();
            for (i, b) in flips {
                if i < bytes.len() {
                    bytes[i] = b;
                }
            }
            if let Some((at, n)) = cut {
                let at = at.min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            if let Some((at, extra)) = insert {
                let at = at.min(bytes.len());
                bytes.splice(at..at, extra);
            }
            bytes
        })
}

/// A seed with members inserted at the start of some of its objects, with keys the seed uses:
/// documents with repeated keys, which [`mappings::Source`] must read as `serde_json` does
/// (the first place, the last value).
fn with_repeated_keys(
    seed: &'static str,
    keys: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> {
    let opens: Vec<usize> = seed.match_indices('{').map(|(i, _)| i + 1).collect();
    let n = opens.len();
    proptest::collection::vec(
        (
            0..n,
            proptest::sample::select(keys),
            prop_oneof![
                Just("null"),
                Just("\"\""),
                Just("\"x\""),
                Just("7"),
                Just("true"),
                Just("{}")
            ],
        ),
        1..4,
    )
    .prop_map(move |inserts| {
        let mut at: Vec<(usize, String)> = inserts
            .into_iter()
            .map(|(i, k, v)| (opens[i], format!("{k:?}:{v},")))
            .collect();
        // From the end, so earlier positions stay valid.
        at.sort_by_key(|(pos, _)| std::cmp::Reverse(*pos));
        let mut text = seed.to_owned();
        for (pos, member) in at {
            text.insert_str(pos, &member);
        }
        text.into_bytes()
    })
}

/// Markup-heavy text, likelier than random bytes to reach deep into an XML reader.
fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    "(<[A-Za-z]{1,8}( [a-z]{1,4}=\"[^\"]{0,4}\")?>|</[A-Za-z]{1,8}>|&[a-z]{2,4};|[^<&]{0,6}){0,40}"
        .prop_map(String::into_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sdm_never_panics(data in prop_oneof![mutated(SDM), proptest::collection::vec(any::<u8>(), 0..512)]) {
        fuzzing::sdm(&data);
    }

    #[test]
    fn athena_xml_never_panics(data in prop_oneof![mutated(ATHENA), xmlish()]) {
        fuzzing::athena_xml(&data);
    }

    #[test]
    fn storm_xml_never_panics(data in prop_oneof![mutated(STORM), xmlish()]) {
        fuzzing::storm_xml(&data);
    }

    #[test]
    fn repeated_keys_map_as_serde_json_reads_them(
        rows in with_repeated_keys(ROWS, &["crime_ref", "crime_status_cd", "last_nm", "first_nm", "gender_cd", "event_txt", "event_seq", "officer_key", "crime"]),
        sdm in with_repeated_keys(SDM, &["type", "id", "attributes", "givenName", "familyName", "data", "incidentDescription"]),
    ) {
        // Each compares the mapping of the Source with the mapping of the Value.
        fuzzing::warehouse_rows(&rows);
        fuzzing::sdm(&sdm);
    }

    #[test]
    fn warehouse_rows_never_panic(data in prop_oneof![mutated(ROWS), proptest::collection::vec(any::<u8>(), 0..256)]) {
        fuzzing::warehouse_rows(&data);
    }
}

#[test]
fn the_seeds_themselves_map() {
    let m = mappings::Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    assert!(m.map_xml(mappings::ATHENA_TO_NMPP_CASE, ATHENA).is_ok());
    assert!(m.map_xml(mappings::STORM_TO_NMPP_INCIDENT, STORM).is_ok());
    let rows: serde_json::Value = serde_json::from_str(ROWS).unwrap_or_default();
    assert!(m.map(mappings::WAREHOUSE_TO_NMPP_CASE, &rows).is_ok());
    let sdm: serde_json::Value = serde_json::from_str(SDM).unwrap_or_default();
    assert!(m.sdm_to_nmpp(&sdm).is_ok());
}
