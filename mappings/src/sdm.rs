//! Hot-path validation of an inbound iHub SDM document ([`validate_sdm`]).
//!
//! # Why code, not a JSON Schema
//!
//! The SDM is checked by one hand-written pass over the document, driven by the attribute
//! tables below (entity type → attribute → expected kind), rather than by a JSON Schema run
//! through `jsonschema`:
//! - every error must name the field the way a sender reads it
//!   (`submission.attributes.submissionId`), which depends on the *type* of the included entity
//!   at `/included/6`; schema errors only carry the pointer, and per-type `if`/`then` or `oneOf`
//!   branches report noise from every branch that did not apply;
//! - the cross-reference checks (every linkage names an included entity, exactly one
//!   `submission`) need code anyway, and so do the quirks (string booleans, `forceIdentifier`
//!   as a string of digits that must fit `u32`, `dateofBirthKnown`, time-only end times);
//! - it runs on the HTTP hot path: one pass; field names and pointers are made only for errors.
//!   The gateway runs it over the borrowed tree of [`Source::parse`] ([`validate_sdm_source`]),
//!   whose strings stay in the request body: building a `serde_json::Value` of each body (a
//!   hashed map and an owned string per member) cost more than the checks themselves.
//!
//! The tables are the single source of truth for what the gateway checks on the way in; the
//! coercions they rely on are shared with the mapping transforms ([`crate::values`]) so that a
//! document this accepts is a document the mapping can convert. Unknown entity types and
//! unknown attributes are accepted without checks (the gateway keeps them, never rejects them).

use serde_json::Value;

use crate::codelist::codelists;
use crate::error::FieldError;
use crate::input::{Parsed, Source, Tree};
use crate::values;

/// Facts the gateway needs from a valid SDM document before it persists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdmFacts {
    /// `submission.attributes.submissionId` (the idempotency key).
    pub submission_id: String,
    /// `submission.attributes.forceIdentifier`, as a number whether sent as string or number.
    pub force_identifier: u32,
    /// `submission.attributes.customerReferenceNumber`, when present.
    pub customer_reference: Option<String>,
}

/// What an attribute must hold.
#[derive(Clone, Copy)]
enum Kind {
    /// A string.
    Str,
    /// A string or an integer (address numbers, UPRNs).
    StrOrInt,
    /// A boolean or a string boolean.
    Bool,
    /// A hyphenated UUID string.
    Uuid,
    /// An integer or a string of digits fitting `u32`.
    ForceId,
    /// An RFC 3339 date-time.
    DateTime,
    /// `YYYY-MM-DD` (or an RFC 3339 date-time, whose date is taken).
    Date,
    /// A time of day (`16:00:00`) or an RFC 3339 date-time.
    TimeOrDateTime,
    /// A value of the named code list.
    Code(&'static str),
    /// A string or an array of strings (given names).
    Names,
    /// An object with optional `dateFrom` / `dateTo` dates.
    DateRange,
    /// Standard base64.
    Base64,
}

struct Attr {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Attr {
    Attr {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Attr {
    Attr {
        name,
        kind,
        required: true,
    }
}

const SUBMISSION: &[Attr] = &[
    req("submissionId", Kind::Uuid),
    req("forceIdentifier", Kind::ForceId),
    opt("submitTime", Kind::DateTime),
    opt("category", Kind::Str),
    opt("categorySubcode", Kind::Str),
    opt("customerReferenceNumber", Kind::Str),
    opt("externalReferenceId", Kind::Str),
    opt("ipAddress", Kind::Str),
    opt("userAgent", Kind::Str),
    opt("submissionContent", Kind::Str),
    opt("highHarmFlag", Kind::Bool),
];

const INCIDENT: &[Attr] = &[
    opt("incidentDescription", Kind::Str),
    opt("howInvolvedInCrime", Kind::Code("IVLD")),
    opt("incidentInvolvement", Kind::Code("IVLD")),
    opt("beforeWebsite", Kind::Code("BWST")),
    opt("incidentStartDateTime", Kind::DateRange),
    opt("incidentEndDateTime", Kind::TimeOrDateTime),
    opt("hadWeapon", Kind::Bool),
    opt("incidentAnyWitnesses", Kind::Bool),
    opt("incidentExactTimeKnown", Kind::Bool),
    opt("incidentOnPublicTransport", Kind::Bool),
    opt("incidentReportedAlready", Kind::Bool),
    opt("incidentReportedAlreadyReference", Kind::Str),
    opt("physicallyAssaulted", Kind::Bool),
    opt("subjectedToHateCrime", Kind::Bool),
    opt("subjectedToThreatAbuseOrAssault", Kind::Bool),
    opt("targetedByOffender", Kind::Bool),
];

const PERSON: &[Attr] = &[
    opt("givenName", Kind::Names),
    opt("surname", Kind::Str),
    opt("titleOther", Kind::Str),
    opt("dateOfBirth", Kind::Date),
    opt("dateOfBirthKnown", Kind::Bool),
    // The published examples spell it with a lower-case "of": a synonym.
    opt("dateofBirthKnown", Kind::Bool),
    opt("under18", Kind::Bool),
    opt("disability", Kind::Bool),
    opt("communicationNeeds", Kind::Bool),
    opt("gender", Kind::Code("GNDR")),
    opt("ethnicityGroup", Kind::Code("EGRP")),
    opt("ethnicitySelfDefined", Kind::Code("ESDD")),
    opt("contactPreference", Kind::Code("CPNC")),
];

const LOCATION: &[Attr] = &[
    opt("UPRN", Kind::StrOrInt),
    opt("buildingNumber", Kind::StrOrInt),
    opt("buildingName", Kind::Str),
    opt("street", Kind::Str),
    opt("cityOrTown", Kind::Str),
    opt("county", Kind::Str),
    opt("postcode", Kind::Str),
    opt("fullAddress", Kind::Str),
];

const EMAIL: &[Attr] = &[opt("emailAddress", Kind::Str)];
const TELEPHONE: &[Attr] = &[opt("telephoneNumber", Kind::Str)];
const ATTACHMENT: &[Attr] = &[
    opt("attachmentName", Kind::Str),
    opt("attachmentMimeType", Kind::Str),
    opt("attachmentContent", Kind::Base64),
];

fn attrs_of(kind: &str) -> &'static [Attr] {
    match kind {
        "submission" => SUBMISSION,
        "incident" => INCIDENT,
        "person" => PERSON,
        "location" | "stolenFromLocation" => LOCATION,
        "email" => EMAIL,
        "telephone" => TELEPHONE,
        "attachment" => ATTACHMENT,
        _ => &[],
    }
}

/// Appends `key` to a JSON Pointer, escaping `~` and `/`.
fn ptr(base: &str, key: &str) -> String {
    let mut p = String::with_capacity(base.len() + key.len() + 1);
    p.push_str(base);
    p.push('/');
    for c in key.chars() {
        match c {
            '~' => p.push_str("~0"),
            '/' => p.push_str("~1"),
            c => p.push(c),
        }
    }
    p
}

fn type_error<T: Tree>(pointer: String, field: String, expected: &str, v: &T) -> FieldError {
    let message = format!("{field} must be {expected}, not {}", v.type_name());
    FieldError::new(pointer, field, "type", message)
}

/// Whether `v` is absent: missing or `null`.
fn absent<T: Tree>(v: Option<&T>) -> bool {
    v.is_none_or(Tree::is_null)
}

/// One entity of the compound document, as found.
struct Entity<'a, T> {
    kind: &'a str,
    id: &'a str,
    /// Its position in `included`, or `None` for `data`.
    index: Option<usize>,
    /// The resource object.
    value: &'a T,
}

impl<T> Entity<'_, T> {
    /// The entity's JSON Pointer (`/data`, `/included/3`): made only for an error, so that a
    /// valid document is checked without allocating.
    fn pointer(&self) -> String {
        pointer_of(self.index)
    }
}

fn pointer_of(index: Option<usize>) -> String {
    match index {
        None => "/data".into(),
        Some(i) => format!("/included/{i}"),
    }
}

/// Validates an inbound SDM document and returns the facts the gateway needs.
///
/// Checks: the top level is an object whose `data` is an `incident`; `included` (an array)
/// holds exactly one `submission`; `submissionId` is a UUID; `forceIdentifier` is an integer
/// (or a string of digits) fitting `u32`; `submitTime` is RFC 3339; every relationship linkage
/// is well formed and names an entity of the document; coded values are in their lists; known
/// attributes have the expected JSON type. String booleans, `dateofBirthKnown`, time-only
/// `incidentEndDateTime` and unknown attributes are accepted.
///
/// Every problem found is returned, each with a JSON Pointer into the document as sent, the
/// field by its SDM name, a short rule name and a sentence.
pub fn validate_sdm(doc: &Value) -> Result<SdmFacts, Vec<FieldError>> {
    validate(doc)
}

/// [`validate_sdm`] over a document parsed with [`Source::parse`] (cheaper than parsing it into
/// a `serde_json::Value`); the same checks and the same errors, in the same order.
pub fn validate_sdm_source(doc: &Source<'_>) -> Result<SdmFacts, Vec<FieldError>> {
    match doc.parsed() {
        Parsed::Borrowed(tree) => validate(tree),
        Parsed::Value(v) => validate(v),
    }
}

fn validate<T: Tree>(doc: &T) -> Result<SdmFacts, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !doc.is_object() {
        errors.push(type_error(
            String::new(),
            "document".into(),
            "a JSON:API document (an object with `data` and `included`)",
            doc,
        ));
        return Err(errors);
    }

    let mut entities: Vec<Entity<'_, T>> = Vec::new();
    match doc.member("data") {
        d if absent(d) => errors.push(FieldError::new(
            "/data",
            "data",
            "required",
            "data is required: the incident resource object",
        )),
        Some(data) if data.is_object() => {
            match data.member("type") {
                Some(t) if t.as_str() == Some("incident") => {}
                Some(t) if t.as_str().is_some() => errors.push(FieldError::new(
                    "/data/type",
                    "data.type",
                    "type",
                    format!(
                        "data.type must be \"incident\", not {:?}",
                        t.as_str().unwrap_or_default()
                    ),
                )),
                other => errors.push(missing_or_type("/data/type", "data.type", other)),
            }
            if let Some(e) = entity(data, None, &mut errors) {
                entities.push(e);
            }
        }
        Some(other) => errors.push(type_error(
            "/data".into(),
            "data".into(),
            "an object (the incident)",
            other,
        )),
        None => {}
    }

    match doc.member("included") {
        i if absent(i) => {}
        Some(included) => match included.items() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() {
                        if let Some(e) = entity(item, Some(i), &mut errors) {
                            entities.push(e);
                        }
                    } else {
                        let (pointer, label) = (pointer_of(Some(i)), format!("included[{i}]"));
                        errors.push(type_error(pointer, label, "an object", item));
                    }
                }
            }
            None => errors.push(type_error(
                "/included".into(),
                "included".into(),
                "an array of resource objects",
                included,
            )),
        },
        None => {}
    }

    // Unique (type, id), then sorted for reference look-ups.
    let mut keys: Vec<(&str, &str, usize)> = entities
        .iter()
        .enumerate()
        .map(|(i, e)| (e.kind, e.id, i))
        .collect();
    keys.sort_unstable();
    for pair in keys.windows(2) {
        if pair[0].0 == pair[1].0 && pair[0].1 == pair[1].1 {
            let dup = &entities[pair[1].2];
            errors.push(FieldError::new(
                dup.pointer(),
                dup.kind,
                "unique",
                format!(
                    "{} {} appears more than once in the document",
                    dup.kind, dup.id
                ),
            ));
        }
    }

    let submissions: Vec<&Entity<'_, T>> = entities
        .iter()
        .filter(|e| e.kind == "submission" && e.index.is_some())
        .collect();
    if submissions.is_empty() {
        errors.push(FieldError::new(
            "/included",
            "submission",
            "required",
            "submission is required: included must hold exactly one entity of type submission",
        ));
    }
    for extra in submissions.iter().skip(1) {
        errors.push(FieldError::new(
            extra.pointer(),
            "submission",
            "unique",
            "included must hold exactly one submission, this is another one",
        ));
    }

    for e in &entities {
        check_attributes(e, &mut errors);
        check_relationships(e, &keys, &mut errors);
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(submission) = submissions.first() else {
        return Err(errors);
    };
    let attrs = submission
        .value
        .member("attributes")
        .filter(|a| a.is_object());
    let get = |k: &str| attrs.and_then(|a| a.member(k));
    match (
        get("submissionId").and_then(Tree::as_str),
        get("forceIdentifier").and_then(Tree::as_u32),
    ) {
        (Some(id), Some(force)) => Ok(SdmFacts {
            submission_id: id.to_owned(),
            force_identifier: force,
            customer_reference: get("customerReferenceNumber")
                .and_then(Tree::as_str)
                .map(str::to_owned),
        }),
        // Unreachable after the checks above; reported rather than assumed.
        _ => Err(vec![FieldError::new(
            submission.pointer(),
            "submission.attributes",
            "required",
            "submission.attributes needs submissionId and forceIdentifier",
        )]),
    }
}

fn missing_or_type<T: Tree>(pointer: &str, field: &str, found: Option<&T>) -> FieldError {
    match found {
        Some(v) if !v.is_null() => type_error(pointer.into(), field.into(), "a string", v),
        _ => FieldError::new(pointer, field, "required", format!("{field} is required")),
    }
}

/// The resource object's `type` and `id`, or errors naming what is missing.
fn entity<'a, T: Tree>(
    obj: &'a T,
    index: Option<usize>,
    errors: &mut Vec<FieldError>,
) -> Option<Entity<'a, T>> {
    let kind = obj.member("type").and_then(Tree::as_str);
    let id = obj.member("id").and_then(Tree::as_str);
    let label = || match index {
        None => "data".to_owned(),
        Some(i) => format!("included[{i}]"),
    };
    if let (None, Some(_)) = (kind, index) {
        errors.push(missing_or_type(
            &ptr(&pointer_of(index), "type"),
            &format!("{}.type", label()),
            obj.member("type"),
        ));
    }
    if id.is_none() {
        let field = format!("{}.id", kind.map_or_else(label, str::to_owned));
        errors.push(missing_or_type(
            &ptr(&pointer_of(index), "id"),
            &field,
            obj.member("id"),
        ));
    }
    Some(Entity {
        kind: kind?,
        id: id?,
        index,
        value: obj,
    })
}

fn check_attributes<T: Tree>(e: &Entity<'_, T>, errors: &mut Vec<FieldError>) {
    let rules = attrs_of(e.kind);
    let attrs = match e.value.member("attributes") {
        a if absent(a) => None,
        Some(a) if a.is_object() => Some(a),
        Some(other) => {
            errors.push(type_error(
                ptr(&e.pointer(), "attributes"),
                format!("{}.attributes", e.kind),
                "an object",
                other,
            ));
            return;
        }
        None => None,
    };
    for rule in rules {
        match attrs.and_then(|a| a.member(rule.name)) {
            Some(v) if !v.is_null() => check_value(e, rule, v, errors),
            _ => {
                if rule.required {
                    let field = format!("{}.attributes.{}", e.kind, rule.name);
                    let message = format!("{field} is required");
                    let pointer = ptr(&ptr(&e.pointer(), "attributes"), rule.name);
                    errors.push(FieldError::new(pointer, field, "required", message));
                }
            }
        }
    }
}

fn check_value<T: Tree>(e: &Entity<'_, T>, rule: &Attr, v: &T, errors: &mut Vec<FieldError>) {
    let s = v.as_str();
    let (ok, expected, rule_name): (bool, &str, &str) = match rule.kind {
        Kind::Str => (s.is_some(), "a string", "type"),
        Kind::StrOrInt => (
            s.is_some() || v.is_integer(),
            "a string or an integer",
            "type",
        ),
        Kind::Bool => (
            v.as_bool().is_some(),
            "a boolean (true/false, or the string \"true\"/\"false\")",
            "type",
        ),
        Kind::ForceId => (
            v.as_u32().is_some(),
            "an integer from 0 to 4294967295 (a number or a string of digits)",
            "type",
        ),
        Kind::Names => (
            s.is_some()
                || v.items()
                    .is_some_and(|a| a.iter().all(|n| n.as_str().is_some())),
            "an array of strings",
            "type",
        ),
        Kind::Uuid => match s {
            Some(s) => (values::is_uuid(s), "a UUID (8-4-4-4-12 hex digits)", "uuid"),
            None => (false, "a string (a UUID)", "type"),
        },
        Kind::DateTime => match s {
            Some(s) => (values::is_rfc3339(s), "an RFC 3339 date-time", "rfc3339"),
            None => (false, "a string (an RFC 3339 date-time)", "type"),
        },
        Kind::Date => match s {
            Some(s) => (values::to_date(s).is_some(), "a date (YYYY-MM-DD)", "date"),
            None => (false, "a string (a date, YYYY-MM-DD)", "type"),
        },
        Kind::TimeOrDateTime => match s {
            Some(s) => (
                values::to_time(s).is_some(),
                "a time (HH:MM:SS) or an RFC 3339 date-time",
                "time",
            ),
            None => (false, "a string (a time or date-time)", "type"),
        },
        Kind::Base64 => match s {
            Some(s) => (values::base64_len(s).is_some(), "standard base64", "base64"),
            None => (false, "a string (base64)", "type"),
        },
        Kind::Code(list) => match s {
            Some(code) => {
                if !codelists().contains(list, code) {
                    let field = format!("{}.attributes.{}", e.kind, rule.name);
                    let name = codelists().get(list).map_or(list, |l| l.name.as_str());
                    let message = format!("{field}: {code:?} is not in code list {list} ({name})");
                    let pointer = ptr(&ptr(&e.pointer(), "attributes"), rule.name);
                    errors.push(FieldError::new(pointer, field, "codelist", message));
                }
                return;
            }
            None => (false, "a string (a code)", "type"),
        },
        Kind::DateRange => {
            check_date_range(e, rule, v, errors);
            return;
        }
    };
    if !ok {
        let field = format!("{}.attributes.{}", e.kind, rule.name);
        let pointer = ptr(&ptr(&e.pointer(), "attributes"), rule.name);
        if rule_name == "type" {
            errors.push(type_error(pointer, field, expected, v));
        } else {
            let message = format!("{field} must be {expected}");
            errors.push(FieldError::new(pointer, field, rule_name, message));
        }
    }
}

fn check_date_range<T: Tree>(e: &Entity<'_, T>, rule: &Attr, v: &T, errors: &mut Vec<FieldError>) {
    let field = || format!("{}.attributes.{}", e.kind, rule.name);
    let pointer = || ptr(&ptr(&e.pointer(), "attributes"), rule.name);
    if !v.is_object() {
        errors.push(type_error(
            pointer(),
            field(),
            "an object with dateFrom/dateTo",
            v,
        ));
        return;
    }
    for key in ["dateFrom", "dateTo"] {
        match v.member(key) {
            d if absent(d) => {}
            Some(d) => match d.as_str() {
                Some(s) if values::to_date(s).is_some() => {}
                Some(_) => errors.push(FieldError::new(
                    ptr(&pointer(), key),
                    format!("{}.{key}", field()),
                    "date",
                    format!("{}.{key} must be a date (YYYY-MM-DD)", field()),
                )),
                None => errors.push(type_error(
                    ptr(&pointer(), key),
                    format!("{}.{key}", field()),
                    "a string (a date, YYYY-MM-DD)",
                    d,
                )),
            },
            None => {}
        }
    }
}

fn check_relationships<T: Tree>(
    e: &Entity<'_, T>,
    keys: &[(&str, &str, usize)],
    errors: &mut Vec<FieldError>,
) {
    let rels = match e.value.member("relationships") {
        r if absent(r) => return,
        Some(r) => match r.members() {
            Some(members) => members,
            None => {
                errors.push(type_error(
                    ptr(&e.pointer(), "relationships"),
                    format!("{}.relationships", e.kind),
                    "an object",
                    r,
                ));
                return;
            }
        },
        None => return,
    };
    for (name, rel) in rels {
        // Field names and pointers are made only for an error.
        let at = Rel { entity: e, name };
        if !rel.is_object() {
            errors.push(type_error(
                at.pointer(),
                at.field(),
                "an object {\"data\": [{\"id\", \"type\"}]}",
                rel,
            ));
            continue;
        }
        let Some(data) = rel.member("data") else {
            let field = at.field();
            errors.push(FieldError::new(
                ptr(&at.pointer(), "data"),
                field.clone(),
                "required",
                format!("{field} needs data: a linkage {{\"data\": [{{\"id\", \"type\"}}]}}"),
            ));
            continue;
        };
        if data.is_null() {
            continue;
        }
        if let Some(links) = data.items() {
            for (i, link) in links.iter().enumerate() {
                check_linkage(link, &at, Some(i), keys, errors);
            }
        } else if data.is_object() {
            check_linkage(data, &at, None, keys, errors);
        } else {
            errors.push(type_error(
                ptr(&at.pointer(), "data"),
                at.field(),
                "an array of {\"id\", \"type\"} objects",
                data,
            ));
        }
    }
}

/// A relationship of an entity, named in errors.
struct Rel<'a, 'e, T> {
    entity: &'a Entity<'e, T>,
    name: &'a str,
}

impl<T> Rel<'_, '_, T> {
    /// `incident.relationships.victim`
    fn field(&self) -> String {
        format!("{}.relationships.{}", self.entity.kind, self.name)
    }

    /// `/data/relationships/victim`
    fn pointer(&self) -> String {
        ptr(&ptr(&self.entity.pointer(), "relationships"), self.name)
    }

    /// The pointer of its linkage: `…/data/0` in an array, `…/data` alone.
    fn linkage(&self, index: Option<usize>) -> String {
        let data = ptr(&self.pointer(), "data");
        match index {
            Some(i) => format!("{data}/{i}"),
            None => data,
        }
    }
}

fn check_linkage<T: Tree>(
    link: &T,
    rel: &Rel<'_, '_, T>,
    index: Option<usize>,
    keys: &[(&str, &str, usize)],
    errors: &mut Vec<FieldError>,
) {
    if !link.is_object() {
        errors.push(type_error(
            rel.linkage(index),
            rel.field(),
            "an object {\"id\", \"type\"}",
            link,
        ));
        return;
    }
    let kind = link.member("type").and_then(Tree::as_str);
    let id = link.member("id").and_then(Tree::as_str);
    let (Some(kind), Some(id)) = (kind, id) else {
        for key in ["id", "type"] {
            if link.member(key).and_then(Tree::as_str).is_none() {
                errors.push(missing_or_type(
                    &ptr(&rel.linkage(index), key),
                    &format!("{}.{key}", rel.field()),
                    link.member(key),
                ));
            }
        }
        return;
    };
    let found = keys
        .binary_search_by(|(k, i, _)| (*k, *i).cmp(&(kind, id)))
        .is_ok();
    if !found {
        let field = rel.field();
        errors.push(FieldError::new(
            rel.linkage(index),
            field.clone(),
            "reference",
            format!("{field} points at {kind} {id}, which is not in the document"),
        ));
    }
}
