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
/// when it validates.
pub fn sdm(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let valid = crate::validate_sdm(&doc).is_ok();
    let Some(m) = mappings() else { return };
    // Mapping must not panic on documents validation refused, either.
    if let Ok(nmpp) = m.sdm_to_nmpp(&doc) {
        let _ = m.nmpp_to_athena_xml(&nmpp);
    }
    let _ = valid;
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
pub fn warehouse_rows(data: &[u8]) {
    let Ok(rows) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(m) = mappings() {
        let _ = m.map(crate::WAREHOUSE_TO_NMPP_CASE, &rows);
    }
}
