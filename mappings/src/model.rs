//! The NMPP canonical model, version 1: Rust types and the JSON Schema files they mirror
//! (`schemas/nmpp/v1/*.schema.json`, draft 2020-12).
//!
//! The JSON Schema is the contract (it is what [`validate`] checks every mapped document
//! against); the types are a convenience for Rust code reading NMPP documents. A test checks
//! that the golden NMPP documents deserialise into these types and serialise back unchanged.
//! Coded values are strings (`"GNDR_0003"`), so a new code in a list needs no new release of
//! every consumer; their allowed values are the enums of `common.schema.json`, which a test
//! keeps equal to the code lists.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod compat;
mod records;

pub use records::*;

/// The model version this crate writes.
pub const MODEL_VERSION: &str = "1.0.0";

/// Base URI of the v1 schema files (their `$id`s are this plus the file name).
pub const SCHEMA_BASE: &str = "https://schemas.nmpp-gateway.example/nmpp/v1/";

/// The schema files, `(file name, contents)`; `document.schema.json` is the root.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "document.schema.json",
        include_str!("../schemas/nmpp/v1/document.schema.json"),
    ),
    (
        "common.schema.json",
        include_str!("../schemas/nmpp/v1/common.schema.json"),
    ),
    (
        "submission.schema.json",
        include_str!("../schemas/nmpp/v1/submission.schema.json"),
    ),
    (
        "incident.schema.json",
        include_str!("../schemas/nmpp/v1/incident.schema.json"),
    ),
    (
        "location.schema.json",
        include_str!("../schemas/nmpp/v1/location.schema.json"),
    ),
    (
        "party.schema.json",
        include_str!("../schemas/nmpp/v1/party.schema.json"),
    ),
    (
        "attachment.schema.json",
        include_str!("../schemas/nmpp/v1/attachment.schema.json"),
    ),
    (
        "officer.schema.json",
        include_str!("../schemas/nmpp/v1/officer.schema.json"),
    ),
    (
        "case-record.schema.json",
        include_str!("../schemas/nmpp/v1/case-record.schema.json"),
    ),
    (
        "command-incident.schema.json",
        include_str!("../schemas/nmpp/v1/command-incident.schema.json"),
    ),
    (
        "evidence-item.schema.json",
        include_str!("../schemas/nmpp/v1/evidence-item.schema.json"),
    ),
    (
        "message.schema.json",
        include_str!("../schemas/nmpp/v1/message.schema.json"),
    ),
    (
        "notification.schema.json",
        include_str!("../schemas/nmpp/v1/notification.schema.json"),
    ),
    (
        "officer-task.schema.json",
        include_str!("../schemas/nmpp/v1/officer-task.schema.json"),
    ),
    (
        "contact-change.schema.json",
        include_str!("../schemas/nmpp/v1/contact-change.schema.json"),
    ),
    (
        "event.schema.json",
        include_str!("../schemas/nmpp/v1/event.schema.json"),
    ),
];

/// The NMPP models a mapping spec can target (`[target] model`), each with the schema file
/// that is its root. Output of a spec whose target model is one of these is checked against
/// that schema after every run.
pub const MODELS: &[(&str, &str)] = &[
    ("nmpp@1", "document.schema.json"),
    ("nmpp-case@1", "case-record.schema.json"),
    ("nmpp-officer@1", "officer.schema.json"),
    ("nmpp-incident@1", "command-incident.schema.json"),
    ("nmpp-evidence@1", "evidence-item.schema.json"),
    ("nmpp-message@1", "message.schema.json"),
    ("nmpp-notification@1", "notification.schema.json"),
    ("nmpp-task@1", "officer-task.schema.json"),
    ("nmpp-contact-change@1", "contact-change.schema.json"),
    ("nmpp-event@1", "event.schema.json"),
];

/// The schema files of the released (Live) model versions, kept to check that v1 only grows
/// compatibly ([`compat::breaking_changes`]).
pub const RELEASED_1_0_0: &[(&str, &str)] = &[
    (
        "document.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/document.schema.json"),
    ),
    (
        "common.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/common.schema.json"),
    ),
    (
        "submission.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/submission.schema.json"),
    ),
    (
        "incident.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/incident.schema.json"),
    ),
    (
        "location.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/location.schema.json"),
    ),
    (
        "party.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/party.schema.json"),
    ),
    (
        "attachment.schema.json",
        include_str!("../schemas/nmpp/released/1.0.0/attachment.schema.json"),
    ),
];

fn is_empty_map(m: &Map<String, Value>) -> bool {
    m.is_empty()
}

/// A whole NMPP submission document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Model version (`1.0.0`).
    pub model_version: String,
    /// How the report arrived.
    pub submission: Submission,
    /// What happened.
    pub incident: Incident,
    /// The people on the case with their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<Party>,
    /// Attachment metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Unknown top-level members of the source document.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// The submission (see `submission.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    /// Unique id of the submission (the idempotency key).
    pub submission_id: String,
    /// The force the report is for.
    pub force_identifier: u32,
    /// Form category (`OCR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Form sub-category (`TV1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_subcode: Option<String>,
    /// When it was submitted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_time: Option<String>,
    /// Reference given to the member of the public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_reference_number: Option<String>,
    /// Originating service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_reference_id: Option<String>,
    /// Sender's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Sender's browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Plain-text copy of the whole form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Flagged as high harm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_harm: Option<bool>,
    /// Unknown submission attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// The incident (see `incident.schema.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// IVLD code: how the person reporting is involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub involvement: Option<String>,
    /// BWST code: contact before the website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_website: Option<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<Occurrence>,
    /// A weapon was involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub had_weapon: Option<bool>,
    /// There were witnesses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_witnesses: Option<bool>,
    /// It happened on public transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_public_transport: Option<bool>,
    /// Already reported to the police.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_already: Option<bool>,
    /// The reference of the earlier report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_already_reference: Option<String>,
    /// Someone was physically assaulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physically_assaulted: Option<bool>,
    /// Subjected to a hate crime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hate_crime: Option<bool>,
    /// Subjected to threats, abuse or assault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_abuse_or_assault: Option<bool>,
    /// Targeted by the offender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeted_by_offender: Option<bool>,
    /// Where it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Unknown incident attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// When an incident happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Occurrence {
    /// First possible date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last possible date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// End time of day (`HH:MM:SS`) or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Whether the time is exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_time_known: Option<bool>,
}

/// A location or a person's address (see `location.schema.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For a person's address: `current` or `home`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub address_use: Option<String>,
    /// Unique Property Reference Number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uprn: Option<String>,
    /// Building number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building_number: Option<String>,
    /// Building name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building_name: Option<String>,
    /// Street.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City or town.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_or_town: Option<String>,
    /// County.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub county: Option<String>,
    /// Postcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    /// The whole address as one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_address: Option<String>,
    /// Unknown location attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// A party's role on the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// The victim.
    Victim,
    /// A witness.
    Witness,
    /// The person who reported (possibly on someone's behalf).
    PersonReporting,
    /// Guardian of another party (see [`Party::guardian_of`]).
    Guardian,
    /// A suspect whose identity is known.
    KnownSuspect,
    /// A suspect whose identity is not known.
    UnknownSuspect,
    /// On the case without another role.
    Other,
}

/// A person on the case with their roles (see `party.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    /// Source id of the person.
    pub id: String,
    /// Roles held (one or more).
    pub roles: Vec<Role>,
    /// Ids of the parties this person is the guardian of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardian_of: Vec<String>,
    /// Personal details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    /// Contact details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

/// A person's details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Given names in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given_names: Vec<String>,
    /// Surname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// Title as free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_other: Option<String>,
    /// Date of birth (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Whether the date of birth is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth_known: Option<bool>,
    /// Under 18.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under18: Option<bool>,
    /// GNDR code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// EGRP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity_group: Option<String>,
    /// ESDD code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity_self_defined: Option<String>,
    /// Has a disability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disability: Option<bool>,
    /// Has communication needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_needs: Option<bool>,
    /// CPNC code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_preference: Option<String>,
    /// Unknown person attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// A person's contact details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Addresses, each with its use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Location>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    /// Telephone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telephones: Vec<Telephone>,
}

/// An email address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What it is used for (`personal`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub email_use: Option<String>,
    /// Unknown attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// A telephone number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Telephone {
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The number as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// What it is used for (`personal`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub telephone_use: Option<String>,
    /// Unknown attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// Attachment metadata (see `attachment.schema.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// File name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Decoded size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Lower-case hex SHA-256 of the decoded content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Unknown attributes.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub extra: Map<String, Value>,
}

/// One way a document breaks the NMPP schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON Pointer into the document.
    pub pointer: String,
    /// Why.
    pub message: String,
}

type Validators = std::collections::HashMap<&'static str, jsonschema::Validator>;

fn build_validators() -> Result<Validators, String> {
    let mut resources = Vec::new();
    let mut roots = std::collections::HashMap::new();
    for (name, text) in SCHEMA_FILES {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("schemas/nmpp/v1/{name}: {e}"))?;
        roots.insert(*name, schema.clone());
        resources.push((format!("{SCHEMA_BASE}{name}"), schema));
    }
    let registry = jsonschema::Registry::new()
        .extend(resources)
        .and_then(jsonschema::RegistryBuilder::prepare)
        .map_err(|e| format!("NMPP schema registry: {e}"))?;
    let mut validators = Validators::new();
    for (model, file) in MODELS {
        let root = roots
            .get(file)
            .ok_or_else(|| format!("schemas/nmpp/v1/{file} is missing"))?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(root)
            .map_err(|e| format!("NMPP schema {file}: {e}"))?;
        validators.insert(*model, validator);
    }
    Ok(validators)
}

static VALIDATORS: LazyLock<Result<Validators, String>> = LazyLock::new(build_validators);

/// Why the embedded schema could not be compiled, if it could not (reported by
/// [`Mappings::builtin`](crate::Mappings::builtin)).
pub(crate) fn schema_error() -> Option<String> {
    VALIDATORS.as_ref().err().cloned()
}

/// Whether `model` (a spec's `[target] model`) is an NMPP model with a schema.
pub fn is_nmpp_model(model: &str) -> bool {
    MODELS.iter().any(|(m, _)| *m == model)
}

/// Checks `doc` against the NMPP v1 JSON Schema of a submission document; returns every
/// violation.
pub fn validate(doc: &Value) -> Result<(), Vec<SchemaViolation>> {
    validate_model("nmpp@1", doc)
}

/// Checks `doc` against the schema of NMPP model `model` (one of [`MODELS`]); returns every
/// violation. An unknown model is one violation saying so.
pub fn validate_model(model: &str, doc: &Value) -> Result<(), Vec<SchemaViolation>> {
    let validator = match &*VALIDATORS {
        Ok(v) => match v.get(model) {
            Some(v) => v,
            None => {
                return Err(vec![SchemaViolation {
                    pointer: String::new(),
                    message: format!("{model:?} is not an NMPP model"),
                }]);
            }
        },
        Err(e) => {
            return Err(vec![SchemaViolation {
                pointer: String::new(),
                message: e.clone(),
            }]);
        }
    };
    if validator.is_valid(doc) {
        return Ok(());
    }
    let errors: Vec<SchemaViolation> = validator
        .iter_errors(doc)
        .map(|e| SchemaViolation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
