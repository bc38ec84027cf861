//! Golden cases: every folder under `tests/cases/` is one case, run by [`golden_cases`].
//!
//! A case folder holds an input and the outputs expected from it:
//!
//! | file | meaning |
//! |---|---|
//! | `input.json` | an iHub SDM document: run through `validate_sdm` and `sdm_to_nmpp` |
//! | `input.nmpp.json` | an NMPP document: run through `nmpp_to_athena_xml` only |
//! | `validate.json` | the `FieldError`s `validate_sdm` must return (absent: it must accept) |
//! | `nmpp.json` | the NMPP document `sdm_to_nmpp` must produce |
//! | `athena.xml` | the Athena XML `nmpp_to_athena_xml` must produce from that NMPP |
//! | `error.txt` | the mapping error (its `Display`) the case must fail with instead |
//! | `specs/*.toml` | extra spec files loaded over the built-in ones for this case |
//!
//! A case folder with a `case.toml` runs one spec of any kind instead:
//!
//! ```toml
//! spec = "athena-to-nmpp-case"   # the spec id
//! input = "input.xml"            # .xml: read with mappings::xml::from_xml; .json: as it is
//! expected = "expected.json"     # what the spec must produce (JSON pretty-printed, XML as rendered)
//! # error = "error.txt"          # ... or the mapping error it must fail with
//! ```
//!
//! `UPDATE_GOLDEN=1 cargo test -p mappings --test golden` rewrites the expected files from
//! what the code produces (review the diff before committing it).

use std::fs;
use std::path::{Path, PathBuf};

use mappings::{Mappings, Source, validate_sdm};
use serde_json::Value;

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares `actual` with the file (or writes it when updating); returns a failure message.
fn check(path: &Path, actual: &str) -> Option<String> {
    if update() {
        fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return None;
    }
    let Ok(expected) = fs::read_to_string(path) else {
        return Some(format!(
            "{} is missing; produced:\n{actual}",
            path.display()
        ));
    };
    (expected != actual).then(|| {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        format!(
            "{} differs from what the code produces, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n--- actual ---\n{actual}",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        )
    })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn mappings_for(case: &Path) -> Mappings {
    let dir = case.join("specs");
    if dir.is_dir() {
        Mappings::load_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", case.display()))
    } else {
        Mappings::builtin().unwrap_or_else(|e| panic!("built-in specs: {e}"))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    spec: String,
    input: String,
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// A `case.toml` case: one spec, one input, one expected output or error.
fn run_spec_case(case: &Path, mappings: &Mappings) -> Vec<String> {
    let text = fs::read_to_string(case.join("case.toml")).unwrap_or_default();
    let file: CaseFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}/case.toml: {e}", case.display()));
    let input_path = case.join(&file.input);
    let raw =
        fs::read_to_string(&input_path).unwrap_or_else(|e| panic!("{}: {e}", input_path.display()));
    let source = if file.input.ends_with(".xml") {
        match mappings::xml::from_xml(&raw) {
            Ok((_, tree)) => tree,
            Err(e) => panic!("{}: {e}", input_path.display()),
        }
    } else {
        read_json(&input_path)
    };
    let xml_target = file
        .expected
        .as_deref()
        .is_some_and(|e| e.ends_with(".xml"));
    let produced = if xml_target {
        mappings.render(&file.spec, &source)
    } else {
        mappings.map(&file.spec, &source).map(|v| pretty(&v))
    };
    let mut failures = Vec::new();
    if !file.input.ends_with(".xml") && !xml_target {
        failures.extend(same_from_text(case, &raw, &produced, |s| {
            mappings.map_source(&file.spec, s)
        }));
    }
    match (produced, &file.expected, &file.error) {
        (Ok(out), Some(expected), None) => failures.extend(check(&case.join(expected), &out)),
        (Err(e), None, Some(error)) => {
            failures.extend(check(&case.join(error), &format!("{e}\n")));
        }
        (Ok(out), None, Some(error)) => failures.push(format!(
            "{}: expected an error, the mapping succeeded:\n{out}",
            case.join(error).display()
        )),
        (Err(e), Some(_), None) => {
            failures.push(format!("{}: unexpected mapping error: {e}", case.display()));
        }
        _ => failures.push(format!(
            "{}/case.toml: give exactly one of `expected` and `error`",
            case.display()
        )),
    }
    failures
}

/// The mapping of the document parsed from its text ([`Source`]) must be what the mapping of
/// its `Value` gave (`expected`: pretty JSON or the error).
fn same_from_text(
    case: &Path,
    raw: &str,
    expected: &Result<String, mappings::MappingError>,
    map: impl Fn(&Source<'_>) -> Result<Value, mappings::MappingError>,
) -> Option<String> {
    let source = Source::parse(raw.as_bytes())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", case.display()));
    let from_text = map(&source).map(|v| pretty(&v));
    let same = match (&from_text, expected) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    (!same).then(|| {
        format!(
            "{}: mapped from the text: {from_text:?}, from the Value: {expected:?}",
            case.display()
        )
    })
}

fn run_case(case: &Path) -> Vec<String> {
    let mappings = mappings_for(case);
    if case.join("case.toml").exists() {
        return run_spec_case(case, &mappings);
    }
    let mut failures = Vec::new();
    let error_file = case.join("error.txt");
    let expects_error = error_file.exists();
    let mut error: Option<String> = None;

    let nmpp = if case.join("input.json").exists() {
        let input = read_json(&case.join("input.json"));
        let validated = validate_sdm(&input);
        let validate_file = case.join("validate.json");
        match (&validated, validate_file.exists() || update()) {
            (Ok(_), _) if !validate_file.exists() => {}
            (Ok(_), _) => failures.push(format!(
                "{}: validate_sdm accepted the input",
                validate_file.display()
            )),
            (Err(errors), true) => {
                let actual = pretty(&serde_json::to_value(errors).unwrap_or_default());
                failures.extend(check(&validate_file, &actual));
            }
            (Err(errors), false) => failures.push(format!(
                "{}: validate_sdm rejected the input: {errors:#?}",
                case.display()
            )),
        }
        let mapped = mappings.sdm_to_nmpp(&input);
        let raw = fs::read_to_string(case.join("input.json")).unwrap_or_default();
        failures.extend(same_from_text(
            case,
            &raw,
            &mapped.as_ref().map(pretty).map_err(Clone::clone),
            |s| mappings.sdm_source_to_nmpp(s),
        ));
        match mapped {
            Ok(nmpp) => {
                // The NMPP Rust types read and write the document unchanged.
                let typed: mappings::model::Document = serde_json::from_value(nmpp.clone())
                    .unwrap_or_else(|e| panic!("{}: NMPP types: {e}", case.display()));
                assert_eq!(
                    serde_json::to_value(&typed).unwrap_or_default(),
                    nmpp,
                    "{}: NMPP types do not round-trip the document",
                    case.display()
                );
                failures.extend(check(&case.join("nmpp.json"), &pretty(&nmpp)));
                Some(nmpp)
            }
            Err(e) => {
                error = Some(e.to_string());
                None
            }
        }
    } else if case.join("input.nmpp.json").exists() {
        Some(read_json(&case.join("input.nmpp.json")))
    } else {
        failures.push(format!(
            "{}: no input.json or input.nmpp.json",
            case.display()
        ));
        None
    };

    if let Some(nmpp) = nmpp {
        match mappings.nmpp_to_athena_xml(&nmpp) {
            Ok(xml) => failures.extend(check(&case.join("athena.xml"), &xml)),
            Err(e) => error = Some(e.to_string()),
        }
    }

    match (error, expects_error || (update() && error_file.exists())) {
        (Some(e), true) => failures.extend(check(&error_file, &format!("{e}\n"))),
        (Some(e), false) => {
            failures.push(format!("{}: unexpected mapping error: {e}", case.display()));
        }
        (None, true) => failures.push(format!(
            "{}: expected an error, the mapping succeeded",
            error_file.display()
        )),
        (None, false) => {}
    }
    failures
}

#[test]
fn golden_cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(run_case(case));
    }
    assert!(
        cases.len() >= 24,
        "expected at least 24 golden cases, found {}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The Athena and warehouse cases hold the same facts: the NMPP documents must be identical,
/// byte for byte.
#[test]
fn athena_and_warehouse_golden_cases_give_the_same_document() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let athena =
        fs::read_to_string(root.join("athena-case-read/expected.json")).unwrap_or_default();
    let warehouse =
        fs::read_to_string(root.join("warehouse-case-rows/expected.json")).unwrap_or_default();
    assert!(!athena.is_empty());
    assert_eq!(athena, warehouse);
}
