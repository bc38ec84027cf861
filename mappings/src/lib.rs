//! NMPP canonical model, constrained-value lists and the declarative mapping engine.
//!
//! Every system the gateway talks to is mapped to and from one canonical model, the NMPP
//! model, by **mapping specs**: TOML files a force's integration team can read and change
//! without code (the format is documented in `SPEC-FORMAT.md` beside this crate). This crate
//! is pure and synchronous: no I/O (except [`Mappings::load_dir`], which reads spec files
//! once, at start), no async.
//!
//! # Layout
//!
//! | where | what |
//! |---|---|
//! | `schemas/nmpp/v1/` | the NMPP model v1 as JSON Schema (draft 2020-12): the contract |
//! | `codelists/` | constrained-value lists (GNDR, CPNC, EGRP, ESDD, IVLD, BWST, ROLE, OUTCOME, VCRIGHT, CSTS, POCT, RANK, GRAD, TLEV) |
//! | `specs/` | the built-in mapping specs: SDM → NMPP, NMPP ↔ Athena (create, read, writes), warehouse rows → NMPP, STORM, DAMS, iHub (see `SPEC-FORMAT.md`); `*.vN.toml` is version N, several versions of one spec load side by side ([`Mappings`]) |
//! | `src/model/` | the NMPP types added for the force adapters ([`model::CaseRecord`], …) and the Live-schema compatibility check ([`model::compat`]) |
//! | `src/fuzzing.rs` | entry points of the fuzz targets in `fuzz/` ([`fuzzing`]) |
//! | `benches/throughput.rs` | mapping throughput beside raw serde_json / quick-xml, one run |
//! | `src/model.rs` | Rust types of the NMPP model and schema validation ([`model`]) |
//! | `src/sdm.rs` | [`validate_sdm`] (and [`validate_sdm_source`] over a borrowed parse, as `POST /incidents` runs it): hot-path checks of an inbound iHub SDM document |
//! | `src/spec/` | spec files: TOML shape, `extends` merging, compilation with `file:line` errors |
//! | `src/path.rs` | source path expressions (`$person->currentAddress.attributes.street`) |
//! | `src/engine.rs` | runs a compiled spec over a document, building a `serde_json::Value` |
//! | `src/input.rs` | what the engine reads: a `serde_json::Value`, or a [`Source`] parsed from text into a borrowed tree (no hashed maps, strings left in the text) |
//! | `src/transform.rs` | value transforms (`boolean`, `date`, `join`, `sha256_base64`, …) |
//! | `src/xml.rs` | XML ↔ `Value` by one documented convention ([`xml`]) |
//! | `src/doc.rs` | Markdown documentation of the loaded specs ([`Mappings::document`]) |
//! | `tests/cases/` | golden cases: one folder per case, run by `tests/golden.rs` |
//!
//! # Flow
//!
//! ```text
//! iHub SDM (JSON:API) ──validate_sdm──► persisted ──Source::parse, sdm_source_to_nmpp──► NMPP v1 (schema-checked)
//!                                                   ──nmpp_to_athena_xml──► Athena CrimeRecord XML
//! ```

mod codelist;
mod doc;
mod engine;
mod error;
pub mod fuzzing;
mod input;
pub mod model;
mod path;
mod sdm;
mod spec;
mod transform;
mod values;
pub mod xml;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use codelist::{CodeList, CodeLists, codelists};
pub use error::{FieldError, MappingError, SpecError, UnknownVersion};
pub use input::Source;
pub use sdm::{SdmFacts, validate_sdm, validate_sdm_source};

use engine::{Node, Spec, TargetFormat};

/// Id of the built-in iHub SDM → NMPP spec.
pub const SDM_TO_NMPP: &str = "sdm-to-nmpp";
/// Id of the built-in NMPP → Athena `CrimeRecord` spec.
pub const NMPP_TO_ATHENA: &str = "nmpp-to-athena";
/// Id of the built-in spec: Athena `CrimeRecord` (read) → NMPP case record.
pub const ATHENA_TO_NMPP_CASE: &str = "athena-to-nmpp-case";
/// Id of the built-in spec: Athena data-warehouse rows → NMPP case record.
pub const WAREHOUSE_TO_NMPP_CASE: &str = "warehouse-to-nmpp-case";
/// Id of the built-in spec: NMPP case record → Athena `CrimeRecord` (read form).
pub const NMPP_CASE_TO_ATHENA: &str = "nmpp-case-to-athena";
/// Id of the built-in spec: NMPP message → Athena victim-contact-log entry.
pub const NMPP_TO_ATHENA_VICTIM_CONTACT: &str = "nmpp-to-athena-victim-contact";
/// Id of the built-in spec: NMPP officer task → Athena officer task.
pub const NMPP_TO_ATHENA_TASK: &str = "nmpp-to-athena-task";
/// Id of the built-in spec: NMPP contact-details change → Athena contact details.
pub const NMPP_TO_ATHENA_CONTACT_DETAILS: &str = "nmpp-to-athena-contact-details";
/// Id of the built-in spec: STORM `Incident` → NMPP command-and-control incident.
pub const STORM_TO_NMPP_INCIDENT: &str = "storm-to-nmpp-incident";
/// Id of the built-in spec: NMPP incident (with envelope) → STORM `IncidentMessage`.
pub const NMPP_TO_STORM_MESSAGE: &str = "nmpp-to-storm-message";
/// Id of the built-in spec: NMPP evidence item → DAMS upload metadata.
pub const NMPP_TO_DAMS_EVIDENCE: &str = "nmpp-to-dams-evidence";
/// Id of the built-in spec: DAMS evidence resource → NMPP evidence item.
pub const DAMS_TO_NMPP_EVIDENCE: &str = "dams-to-nmpp-evidence";
/// Id of the built-in spec: NMPP domain event → iHub case event.
pub const NMPP_TO_IHUB_EVENT: &str = "nmpp-to-ihub-event";
/// Id of the built-in spec: NMPP notification request → iHub notification request.
pub const NMPP_TO_IHUB_NOTIFICATION: &str = "nmpp-to-ihub-notification";
/// The target model name whose output is checked against the NMPP v1 schema.
pub const NMPP_MODEL: &str = "nmpp@1";

/// The built-in spec files, embedded at build time: `(file name, contents)`.
pub const BUILTIN_SPECS: &[(&str, &str)] = &[
    (
        "specs/sdm-to-nmpp.v1.toml",
        include_str!("../specs/sdm-to-nmpp.v1.toml"),
    ),
    (
        "specs/nmpp-to-athena.v1.toml",
        include_str!("../specs/nmpp-to-athena.v1.toml"),
    ),
    (
        "specs/nmpp-to-athena.v2.toml",
        include_str!("../specs/nmpp-to-athena.v2.toml"),
    ),
    (
        "specs/athena-to-nmpp-case.v1.toml",
        include_str!("../specs/athena-to-nmpp-case.v1.toml"),
    ),
    (
        "specs/warehouse-to-nmpp-case.v1.toml",
        include_str!("../specs/warehouse-to-nmpp-case.v1.toml"),
    ),
    (
        "specs/nmpp-case-to-athena.v1.toml",
        include_str!("../specs/nmpp-case-to-athena.v1.toml"),
    ),
    (
        "specs/nmpp-to-athena-victim-contact.v1.toml",
        include_str!("../specs/nmpp-to-athena-victim-contact.v1.toml"),
    ),
    (
        "specs/nmpp-to-athena-task.v1.toml",
        include_str!("../specs/nmpp-to-athena-task.v1.toml"),
    ),
    (
        "specs/nmpp-to-athena-contact-details.v1.toml",
        include_str!("../specs/nmpp-to-athena-contact-details.v1.toml"),
    ),
    (
        "specs/storm-to-nmpp-incident.v1.toml",
        include_str!("../specs/storm-to-nmpp-incident.v1.toml"),
    ),
    (
        "specs/nmpp-to-storm-message.v1.toml",
        include_str!("../specs/nmpp-to-storm-message.v1.toml"),
    ),
    (
        "specs/nmpp-to-dams-evidence.v1.toml",
        include_str!("../specs/nmpp-to-dams-evidence.v1.toml"),
    ),
    (
        "specs/dams-to-nmpp-evidence.v1.toml",
        include_str!("../specs/dams-to-nmpp-evidence.v1.toml"),
    ),
    (
        "specs/nmpp-to-ihub-event.v1.toml",
        include_str!("../specs/nmpp-to-ihub-event.v1.toml"),
    ),
    (
        "specs/nmpp-to-ihub-notification.v1.toml",
        include_str!("../specs/nmpp-to-ihub-notification.v1.toml"),
    ),
];

/// The loaded, validated mapping specs, by id and version.
///
/// Several versions of a spec are loaded side by side (`nmpp-to-athena@1.0.0` and
/// `nmpp-to-athena@2.0.0`); one of them is its **current** version, the one a plain id
/// (`"nmpp-to-athena"`) means and fresh deliveries use. The others are there for replays that
/// ask for them (`"nmpp-to-athena@2.0.0"`). Which version is current:
///
/// - a version pinned with [`Mappings::pin`] (the gateway's `[mappings] current` setting);
/// - else the newest version loaded from a force's own file ([`Mappings::from_sources`],
///   [`Mappings::load_dir`]): a file the force put there is its choice;
/// - else the **oldest** built-in version, so that a gateway upgrade that ships a new built-in
///   version never changes what a force delivers until the force pins it.
///
/// Build it once at start ([`Mappings::builtin`], [`Mappings::load_dir`],
/// [`Mappings::from_sources`]) and share it (`Arc<Mappings>`): it is immutable, `Send` and
/// `Sync`, and every mapping call is a pure function of the spec and the document.
pub struct Mappings {
    specs: BTreeMap<String, Family>,
}

/// `MAJOR.MINOR.PATCH`, ordered numerically (the loader accepts nothing else).
type Semver = (u64, u64, u64);

fn parse_semver(s: &str) -> Option<Semver> {
    let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

/// Every loaded version of one spec id.
struct Family {
    versions: BTreeMap<Semver, Arc<Spec>>,
    current: Semver,
}

impl Family {
    fn current(&self) -> &Arc<Spec> {
        &self.versions[&self.current]
    }
}

impl fmt::Debug for Mappings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.spec_ids()).finish()
    }
}

impl Mappings {
    /// The specs embedded in the binary (`specs/*.toml`), after checking the embedded code
    /// lists and NMPP schema.
    pub fn builtin() -> Result<Self, SpecError> {
        if let Some(e) = codelist::load_error() {
            return Err(e);
        }
        if let Some(e) = model::schema_error() {
            return Err(SpecError::new("schemas/nmpp/v1", 0, e));
        }
        Self {
            specs: BTreeMap::new(),
        }
        .with_sources(BUILTIN_SPECS.iter().copied(), true)
    }

    /// The built-in specs, then `sources` (`(file name, TOML text)`) in order.
    ///
    /// A source whose `id@version` is already loaded replaces that spec; a new version of a
    /// loaded id is added beside the others and becomes the current one. A source with
    /// `extends = "ID"` (or `"ID@VERSION"`) is merged over the current (or that) version of the
    /// spec (see `SPEC-FORMAT.md`, "Overrides").
    pub fn from_sources<I, N, T>(sources: I) -> Result<Self, SpecError>
    where
        I: IntoIterator<Item = (N, T)>,
        N: AsRef<str>,
        T: AsRef<str>,
    {
        Self::builtin()?.with_sources(sources, false)
    }

    /// The built-in specs, then every `*.toml` file of `dir` in file-name order (a force's own
    /// specs and overrides). The only function of this crate that does I/O.
    pub fn load_dir(dir: impl AsRef<std::path::Path>) -> Result<Self, SpecError> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| SpecError::new(&shown, 0, format!("cannot read directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| SpecError::new(&shown, 0, format!("cannot read directory: {e}")))?
                .path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for path in files {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| SpecError::new(&name, 0, format!("cannot read file: {e}")))?;
            sources.push((name, text));
        }
        Self::from_sources(sources)
    }

    fn with_sources<I, N, T>(mut self, sources: I, builtin: bool) -> Result<Self, SpecError>
    where
        I: IntoIterator<Item = (N, T)>,
        N: AsRef<str>,
        T: AsRef<str>,
    {
        for (name, text) in sources {
            let def = spec::parse(name.as_ref(), text.as_ref())?;
            let def = match &def.extends {
                Some(base_id) => {
                    let Some(base) = self.lookup(base_id.get_ref()) else {
                        return Err(def.origin.error(
                            &base_id.span(),
                            format!(
                                "extends {:?}, which is not loaded (loaded: {})",
                                base_id.get_ref(),
                                self.spec_ids().join(", ")
                            ),
                        ));
                    };
                    let base = Arc::clone(base);
                    spec::merge(&base.def, def)?
                }
                None => def,
            };
            let compiled = spec::compile::compile(def)?;
            // compile() checked the version is MAJOR.MINOR.PATCH.
            let version = parse_semver(&compiled.version).unwrap_or_default();
            let id = compiled.id.clone();
            let compiled = Arc::new(compiled);
            match self.specs.get_mut(&id) {
                None => {
                    self.specs.insert(
                        id,
                        Family {
                            versions: BTreeMap::from([(version, compiled)]),
                            current: version,
                        },
                    );
                }
                Some(family) => {
                    family.versions.insert(version, compiled);
                    // A force's file is its choice; among built-ins the oldest stays current.
                    if !builtin || version < family.current {
                        family.current = version;
                    }
                }
            }
        }
        Ok(self)
    }

    /// The spec `name` names: `id` (its current version) or `id@MAJOR.MINOR.PATCH`.
    fn lookup(&self, name: &str) -> Option<&Arc<Spec>> {
        match name.split_once('@') {
            None => self.specs.get(name).map(Family::current),
            Some((id, version)) => self.specs.get(id)?.versions.get(&parse_semver(version)?),
        }
    }

    /// Makes `version` (`MAJOR.MINOR.PATCH`) the current version of spec `id`: what a plain
    /// id, and so every fresh delivery, uses from now on.
    pub fn pin(&mut self, id: &str, version: &str) -> Result<(), UnknownVersion> {
        let requested = format!("{id}@{version}");
        let available = self.versions(id);
        match (self.specs.get_mut(id), parse_semver(version)) {
            (Some(family), Some(v)) if family.versions.contains_key(&v) => {
                family.current = v;
                Ok(())
            }
            _ => Err(UnknownVersion {
                requested,
                available: if available.is_empty() {
                    self.spec_ids()
                } else {
                    available
                },
            }),
        }
    }

    /// The canonical `id@version` of the spec `name` names (`id` for its current version, or
    /// `id@MAJOR.MINOR.PATCH`), or what is loaded instead.
    pub fn resolve(&self, name: &str) -> Result<String, UnknownVersion> {
        self.lookup(name.trim()).map(|s| s.name()).ok_or_else(|| {
            let id = name.trim().split('@').next().unwrap_or_default();
            let available = self.versions(id);
            UnknownVersion {
                requested: name.to_owned(),
                available: if available.is_empty() {
                    self.spec_ids()
                } else {
                    available
                },
            }
        })
    }

    /// `id@version` of every loaded version of spec `id`, oldest first (empty when the id is
    /// not loaded).
    pub fn versions(&self, id: &str) -> Vec<String> {
        self.specs
            .get(id)
            .map(|f| f.versions.values().map(|s| s.name()).collect())
            .unwrap_or_default()
    }

    /// `id@version` of every loaded spec, every version, by id then oldest first.
    pub fn spec_ids(&self) -> Vec<String> {
        self.specs
            .values()
            .flat_map(|f| f.versions.values().map(|s| s.name()))
            .collect()
    }

    fn spec(&self, id: &str) -> Result<&Spec, MappingError> {
        self.lookup(id).map(|s| &**s).ok_or_else(|| MappingError {
            spec: id.to_owned(),
            path: String::new(),
            message: format!(
                "no mapping spec with id {id:?} (loaded: {})",
                self.spec_ids().join(", ")
            ),
        })
    }

    /// Runs spec `id` (its current version, or the version `id@MAJOR.MINOR.PATCH` names) over
    /// `source` and returns the target tree. Output of a spec whose target model is
    /// [`NMPP_MODEL`] is checked against the NMPP v1 JSON Schema.
    pub fn map(&self, id: &str, source: &Value) -> Result<Value, MappingError> {
        let spec = self.spec(id)?;
        let out = engine::run(spec, source)?;
        Self::checked(spec, out)
    }

    /// [`map`](Self::map) over a document parsed with [`Source::parse`] (cheaper than parsing
    /// it into a `Value` first: the engine reads the text's strings where they are).
    pub fn map_source(&self, id: &str, source: &Source<'_>) -> Result<Value, MappingError> {
        let spec = self.spec(id)?;
        let out = match source.parsed() {
            input::Parsed::Borrowed(tree) => engine::run(spec, tree)?,
            input::Parsed::Value(v) => engine::run(spec, v)?,
        };
        Self::checked(spec, out)
    }

    /// `out` of `spec`, checked against the NMPP v1 JSON Schema when its target is an NMPP
    /// model.
    fn checked(spec: &Spec, out: Value) -> Result<Value, MappingError> {
        if model::is_nmpp_model(&spec.target_model)
            && let Err(violations) = model::validate_model(&spec.target_model, &out)
        {
            let more = match violations.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            let (path, why) = violations
                .into_iter()
                .next()
                .map(|v| (v.pointer, v.message))
                .unwrap_or_default();
            return Err(MappingError {
                spec: spec.name(),
                path,
                message: format!("the mapped document breaks the NMPP v1 schema: {why}{more}"),
            });
        }
        Ok(out)
    }

    /// Runs spec `id` over `source` and serialises the result in the spec's target format
    /// (JSON, or XML by the convention of [`xml`]).
    pub fn render(&self, id: &str, source: &Value) -> Result<String, MappingError> {
        let spec = self.spec(id)?;
        // The engine's tree is written as it is, without becoming a `Value`; output checked
        // against an NMPP schema goes through `map`, which checks a `Value`.
        let out = if model::is_nmpp_model(&spec.target_model) {
            Node::owned(self.map(id, source)?)
        } else {
            engine::run_tree(spec, source)?
        };
        match &spec.target_format {
            TargetFormat::Json => serde_json::to_string(&out).map_err(|e| MappingError {
                spec: spec.name(),
                path: String::new(),
                message: format!("cannot serialise: {e}"),
            }),
            TargetFormat::Xml {
                root,
                namespace,
                indent,
            } => {
                let tree = match (namespace, out.into_members()) {
                    (Some(ns), Ok(body)) => {
                        // `@xmlns` first; one in the body gives its value.
                        let mut xmlns = Node::owned(Value::String(ns.clone()));
                        let mut members = Vec::with_capacity(body.len() + 1);
                        members.push((Cow::Borrowed("@xmlns"), Node::Array(Vec::new())));
                        for (k, v) in body {
                            if k == "@xmlns" {
                                xmlns = v;
                            } else {
                                members.push((k, v));
                            }
                        }
                        members[0].1 = xmlns;
                        Node::Object(members)
                    }
                    (_, Ok(body)) => Node::Object(body),
                    (_, Err(out)) => out,
                };
                let options = xml::WriteOptions {
                    indent: *indent,
                    declaration: false,
                };
                xml::write_tree(root, &tree, options).map_err(|e| MappingError {
                    spec: spec.name(),
                    path: match &e {
                        xml::XmlError::Write { path, .. } => path.clone(),
                        xml::XmlError::Read { .. } => String::new(),
                    },
                    message: e.to_string(),
                })
            }
        }
    }

    /// Reads `xml` ([`xml::from_xml`]) and runs spec `id` over the tree of its root element.
    /// Text that is not XML this reader accepts is a [`MappingError`] whose path is empty and
    /// whose message starts `malformed XML`.
    pub fn map_xml(&self, id: &str, xml_text: &str) -> Result<Value, MappingError> {
        let spec = self.spec(id)?;
        let (_, tree) = xml::from_xml(xml_text).map_err(|e| MappingError {
            spec: spec.name(),
            path: String::new(),
            message: format!("malformed XML: {e}"),
        })?;
        self.map(id, &tree)
    }

    /// The `[source] model` and `[target] model` of spec `id`.
    pub fn models(&self, id: &str) -> Option<(&str, &str)> {
        self.lookup(id)
            .map(|s| (s.source_model.as_str(), s.target_model.as_str()))
    }

    /// iHub SDM → NMPP submission document (spec [`SDM_TO_NMPP`]), checked against the NMPP
    /// v1 schema.
    pub fn sdm_to_nmpp(&self, sdm: &Value) -> Result<Value, MappingError> {
        self.map(SDM_TO_NMPP, sdm)
    }

    /// [`sdm_to_nmpp`](Self::sdm_to_nmpp) over a document parsed with [`Source::parse`].
    pub fn sdm_source_to_nmpp(&self, sdm: &Source<'_>) -> Result<Value, MappingError> {
        self.map_source(SDM_TO_NMPP, sdm)
    }

    /// NMPP submission document → Athena `CrimeRecord` XML (spec [`NMPP_TO_ATHENA`]).
    pub fn nmpp_to_athena_xml(&self, nmpp: &Value) -> Result<String, MappingError> {
        self.render(NMPP_TO_ATHENA, nmpp)
    }

    /// `id@version` of the spec `id` names (its current version, or `id@version` itself; for
    /// the journal); `id@unknown` if not loaded.
    pub fn spec_version(&self, id: &str) -> String {
        self.lookup(id).map_or_else(
            || format!("{}@unknown", id.split('@').next().unwrap_or_default()),
            |s| s.name(),
        )
    }

    /// Whether `id@version` is the current version of its spec.
    fn is_current(&self, spec: &Spec) -> bool {
        self.specs
            .get(&spec.id)
            .is_some_and(|f| f.current().version == spec.version)
    }

    /// Markdown documentation of every loaded spec: per spec a table of target field ←
    /// source field with transforms, code lists and conditions, its code tables, and for specs
    /// that chain (one's target model is another's source model) the lineage from the first
    /// source through NMPP to the last target.
    ///
    /// Every loaded version is documented, each marked current or not.
    pub fn document(&self) -> String {
        let specs: Vec<(&Spec, bool)> = self
            .specs
            .values()
            .flat_map(|f| f.versions.values())
            .map(|s| (&**s, self.is_current(s)))
            .collect();
        doc::render(&specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_debug<T: Send + Sync + fmt::Debug>() {}

    #[test]
    fn mappings_is_send_sync_debug() {
        assert_send_sync_debug::<Mappings>();
    }
}
