//! Replaying through another mapping version (issue 3): which versions a replay may ask for,
//! and the unified diff of the target payload an exchange sent against the one the asked-for
//! version makes, shown by a dry run before anything is sent.
//!
//! A replay that asks for a version stores it on the child (`requested_mapping_version`); the
//! delivery pipeline then maps the child through that version ([`crate::delivery`]) and records
//! it on the attempt, like any other delivery. The preview here maps exactly as delivery does:
//! the stored SDM document through the current `sdm-to-nmpp`, then the NMPP document through the
//! asked-for target spec (an NMPP event goes straight to its spec).

use mappings::Mappings;
use replay::{ExchangeSummary, Journal, JournalError};
use serde::Serialize;
use uuid::Uuid;

/// The mapping specs whose output a delivery sends, with the target system it goes to: Athena
/// crime records and iHub case events. A replay may ask for any loaded version of these, and of
/// no other spec.
pub const DELIVERED_SPECS: &[(&str, &str)] = &[
    (mappings::NMPP_TO_ATHENA, "athena"),
    (mappings::NMPP_TO_IHUB_EVENT, "ihub"),
];

/// `id@version` of every version a replay may ask for, by spec then oldest first.
pub fn replayable(m: &Mappings) -> Vec<String> {
    DELIVERED_SPECS
        .iter()
        .flat_map(|(id, _)| m.versions(id))
        .collect()
}

/// The target system whose payloads the spec `name` (`id@version`) makes, if it is one of
/// [`DELIVERED_SPECS`]. A bulk replay through a version covers only that system's exchanges.
pub fn target_system(name: &str) -> Option<&'static str> {
    DELIVERED_SPECS
        .iter()
        .find(|(id, _)| *id == spec_id(name))
        .map(|(_, system)| *system)
}

/// Narrows a bulk replay's filter to the exchanges `name` can remap: those of its target
/// system. A filter that names another target is refused (the words say why).
pub fn narrow(filter: &mut replay::ExchangeFilter, name: &str) -> Result<(), String> {
    let Some(system) = target_system(name) else {
        return Ok(());
    };
    match &filter.target {
        Some(t) if t != system => Err(format!(
            "{name} makes payloads for {system}, but the filter's target is {t:?}"
        )),
        _ => {
            filter.target = Some(system.to_owned());
            Ok(())
        }
    }
}

/// Checks a requested mapping version (`nmpp-to-athena@2.0.0`, or a bare spec id for its
/// current version); returns its canonical `id@version`, or why not, naming what is available.
pub fn check(m: &Mappings, requested: &str) -> Result<String, String> {
    let available = replayable(m);
    match m.resolve(requested) {
        Ok(name) if available.contains(&name) => Ok(name),
        Ok(name) => Err(format!(
            "{name} does not make a payload that deliveries send (available: {})",
            available.join(", ")
        )),
        Err(_) => Err(format!(
            "{requested:?} is not a loaded mapping version; give SPEC@MAJOR.MINOR.PATCH \
             (available: {})",
            available.join(", ")
        )),
    }
}

/// Spec id of an `id@version` name.
fn spec_id(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// Whether exchange `row` can be replayed through `to`: refused when the payload it sent was
/// made by another spec (an iHub event cannot go through the Athena crime-record spec).
pub fn fits(sent_with: Option<&str>, to: &str) -> Result<(), String> {
    match sent_with {
        Some(from) if spec_id(from) != spec_id(to) => Err(format!(
            "its target payload is made by {}, not {}",
            spec_id(from),
            spec_id(to)
        )),
        _ => Ok(()),
    }
}

/// What replaying one exchange through a mapping version would change in its target payload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingDiff {
    /// The exchange.
    pub exchange_id: Uuid,
    /// The mapping of the payload it last sent (`nmpp-to-athena@1.0.0`); `null` when it never
    /// got as far as mapping.
    pub from: Option<String>,
    /// The mapping a replay would use (`nmpp-to-athena@2.0.0`).
    pub to: String,
    /// Whether the two payloads differ.
    pub changed: bool,
    /// Unified diff of the sent payload (`---`) against the new one (`+++`), three lines of
    /// context; empty when they are the same or when no diff could be made.
    pub diff: String,
    /// Why no diff could be made (payloads deleted by retention, a document the version cannot
    /// map, another spec's payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Maps a stored exchange payload through `to`, as a delivery would.
fn render(m: &Mappings, kind: &str, original: &[u8], to: &str) -> Result<String, String> {
    let unreadable = |e: serde_json::Error| format!("the stored payload is not readable: {e}");
    let source = if crate::delivery::is_event_kind(kind) {
        serde_json::from_slice(original).map_err(unreadable)?
    } else {
        let sdm = mappings::Source::parse(original).map_err(unreadable)?;
        m.sdm_source_to_nmpp(&sdm).map_err(|e| e.to_string())?
    };
    m.render(to, &source).map_err(|e| e.to_string())
}

/// The diff for one exchange. `to` must be a checked name ([`check`]). An exchange that is not
/// in the journal is [`JournalError::NotFound`].
pub async fn diff_one(
    journal: &dyn Journal,
    m: &Mappings,
    id: Uuid,
    to: &str,
) -> Result<MappingDiff, JournalError> {
    let detail = journal
        .get(id)
        .await?
        .ok_or_else(|| JournalError::NotFound(id.to_string()))?;
    let from = detail.mapping_version.clone();
    let mut out = MappingDiff {
        exchange_id: id,
        from: from.clone(),
        to: to.to_owned(),
        changed: false,
        diff: String::new(),
        error: None,
    };
    if let Err(why) = fits(from.as_deref(), to) {
        out.error = Some(why);
        return Ok(out);
    }
    let stored = journal.payloads(id).await?;
    let Some(stored) = stored.filter(|p| !p.original.is_empty()) else {
        out.error = Some("its payloads were deleted by retention".into());
        return Ok(out);
    };
    let new = match render(m, &detail.summary.kind, &stored.original, to) {
        Ok(new) => new,
        Err(why) => {
            out.error = Some(format!("{to} cannot map it: {why}"));
            return Ok(out);
        }
    };
    let old = stored
        .target_payload
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    out.changed = old != new;
    if out.changed {
        let old_label = match &from {
            Some(f) => format!("{id} sent ({f})"),
            None => format!("{id} (nothing sent)"),
        };
        let new_label = format!("{id} replayed ({to})");
        out.diff = similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&old_label, &new_label)
            .to_string();
    }
    Ok(out)
}

/// The diff of every exchange of a dry run's sample.
pub async fn diff_sample(
    journal: &dyn Journal,
    m: &Mappings,
    sample: &[ExchangeSummary],
    to: &str,
) -> Result<Vec<MappingDiff>, JournalError> {
    let mut out = Vec::with_capacity(sample.len());
    for row in sample {
        match diff_one(journal, m, row.id, to).await {
            Ok(d) => out.push(d),
            // Deleted by retention between the listing and now: nothing to show.
            Err(JournalError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_versions_of_delivered_specs_are_accepted() {
        let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            check(&m, "nmpp-to-athena@2.0.0").as_deref(),
            Ok("nmpp-to-athena@2.0.0")
        );
        // A bare id is its current version, stored in full so the replay is deterministic.
        assert_eq!(
            check(&m, "nmpp-to-athena").as_deref(),
            Ok("nmpp-to-athena@1.0.0")
        );
        let e = check(&m, "nmpp-to-athena@9.0.0").unwrap_err();
        assert!(
            e.contains("nmpp-to-athena@1.0.0, nmpp-to-athena@2.0.0, nmpp-to-ihub-event@1.0.0"),
            "{e}"
        );
        let e = check(&m, "sdm-to-nmpp@1.0.0").unwrap_err();
        assert!(
            e.contains("does not make a payload that deliveries send"),
            "{e}"
        );
        assert!(fits(Some("nmpp-to-athena@1.0.0"), "nmpp-to-athena@2.0.0").is_ok());
        assert!(fits(None, "nmpp-to-athena@2.0.0").is_ok());
        assert!(fits(Some("nmpp-to-ihub-event@1.0.0"), "nmpp-to-athena@2.0.0").is_err());
        let mut f = replay::ExchangeFilter::default();
        assert!(narrow(&mut f, "nmpp-to-athena@2.0.0").is_ok());
        assert_eq!(f.target.as_deref(), Some("athena"));
        f.target = Some("ihub".into());
        assert!(narrow(&mut f, "nmpp-to-athena@2.0.0").is_err());
    }
}
