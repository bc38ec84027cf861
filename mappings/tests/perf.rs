//! Rough timings of the hot paths, beside the raw cost of parsing and serialising the same
//! documents. Not a timed test (it asserts nothing about speed): run it in release with
//! `cargo test -p mappings --release --test perf -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mappings::{Mappings, validate_sdm};
use serde_json::Value;

fn time<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed() / n
}

/// The online crime report padded to about 5 KB with a realistic form copy.
fn realistic() -> (String, Value) {
    let mut doc: Value =
        serde_json::from_str(include_str!("cases/victim-guardian/input.json")).unwrap_or_default();
    let content =
        "Q: What happened? A: My son's bike was taken from the rack outside school. ".repeat(40);
    if let Some(sub) = doc["included"]
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|e| e["type"] == "submission"))
    {
        sub["attributes"]["submissionContent"] = Value::String(content);
    }
    let text = serde_json::to_string(&doc).unwrap_or_default();
    (text, doc)
}

#[test]
#[ignore = "timings: run in release with --ignored --nocapture"]
fn timings() {
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    let (text, doc) = realistic();
    let nmpp = m.sdm_to_nmpp(&doc).unwrap_or_else(|e| panic!("{e}"));
    let xml = m
        .nmpp_to_athena_xml(&nmpp)
        .unwrap_or_else(|e| panic!("{e}"));
    let n = 20_000;
    let validate = time(n, || validate_sdm(&doc));
    let parse = time(n, || serde_json::from_str::<Value>(&text));
    let raw = time(n, || {
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        serde_json::to_string(&v).unwrap_or_default()
    });
    let to_nmpp = time(n, || m.sdm_to_nmpp(&doc));
    let schema = time(n, || mappings::model::validate(&nmpp));
    let to_athena = time(n, || m.nmpp_to_athena_xml(&nmpp));
    let full = time(n, || {
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let nmpp = m.sdm_to_nmpp(&v).unwrap_or_default();
        m.nmpp_to_athena_xml(&nmpp).unwrap_or_default()
    });
    let xml_raw = time(n, || mappings::xml::from_xml(&xml));
    println!(
        "document: {} bytes SDM, {} bytes Athena XML",
        text.len(),
        xml.len()
    );
    println!("validate_sdm:                      {validate:?}");
    println!("serde_json parse:                  {parse:?}");
    println!("serde_json parse + serialise:      {raw:?}");
    println!("sdm_to_nmpp (incl. schema check):  {to_nmpp:?}");
    println!("  of which NMPP schema validation: {schema:?}");
    println!("nmpp_to_athena_xml:                {to_athena:?}");
    println!("parse + sdm_to_nmpp + athena xml:  {full:?}");
    println!("xml::from_xml of the Athena XML:   {xml_raw:?}");
}
