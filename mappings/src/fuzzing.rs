//! Entry points of the fuzz targets (`mappings/fuzz/`), one per parser of outside input. Each
//! takes arbitrary bytes and must never panic, whatever they are; errors are the expected
//! outcome for most inputs. The same functions run on stable as a bounded property test
//! (`tests/fuzz_smoke.rs`), so CI exercises them without nightly.

use std::sync::LazyLock;

use serde_json::Value;

use crate::Mappings;

static MAPPINGS: LazyLock<Option<Mappings>> = LazyLock::new(|| Mappings::builtin().ok());

fn mappings() -> Option<&'static Mappings> {
    MAPPINGS.as_ref()
}

/// An iHub SDM document as iHub sends it: JSON, `validate_sdm`, then SDM → NMPP → Athena XML
/// when it validates. The document parsed as a [`Source`](crate::Source) (as a delivery reads
/// it) must map exactly as its `Value` does: a difference panics.
pub fn sdm(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        assert!(
            crate::Source::parse(data).is_err(),
            "Source::parse accepted text serde_json refuses"
        );
        return;
    };
    let valid = crate::validate_sdm(&doc).is_ok();
    let Some(m) = mappings() else { return };
    // Mapping must not panic on documents validation refused, either.
    let mapped = m.sdm_to_nmpp(&doc);
    same_from_source(data, &mapped, |s| m.sdm_source_to_nmpp(s));
    if let Ok(nmpp) = mapped {
        let _ = m.nmpp_to_athena_xml(&nmpp);
    }
    let _ = valid;
}

/// Panics unless `data` parsed as a [`Source`](crate::Source) maps (`map`) to `expected`, what
/// its `Value` mapped to.
fn same_from_source(
    data: &[u8],
    expected: &Result<Value, crate::MappingError>,
    map: impl Fn(&crate::Source<'_>) -> Result<Value, crate::MappingError>,
) {
    let source = crate::Source::parse(data)
        .unwrap_or_else(|e| panic!("serde_json parsed the text, Source::parse did not: {e}"));
    let from_source = map(&source);
    assert_eq!(
        &from_source, expected,
        "the mapping of the Source differs from the mapping of the Value"
    );
}

/// An Athena read answer: XML → NMPP case record.
pub fn athena_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(m) = mappings() {
        let _ = m.map_xml(crate::ATHENA_TO_NMPP_CASE, text);
    }
}

/// A STORM incident: XML → NMPP incident (grading through the force's table).
pub fn storm_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(m) = mappings() {
        let _ = m.map_xml(crate::STORM_TO_NMPP_INCIDENT, text);
    }
}

/// A warehouse row set (what the athena_dw adapter builds from SQL rows) → NMPP case record.
/// Mapped from its `Value` and from its [`Source`](crate::Source), with the same result.
pub fn warehouse_rows(data: &[u8]) {
    let Ok(rows) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(m) = mappings() {
        let mapped = m.map(crate::WAREHOUSE_TO_NMPP_CASE, &rows);
        same_from_source(data, &mapped, |s| {
            m.map_source(crate::WAREHOUSE_TO_NMPP_CASE, s)
        });
    }
}
