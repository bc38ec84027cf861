//! Mapping throughput beside the raw cost of parsing and serialising the same documents, in
//! one process run (issue 4's benchmark; figures in BENCHMARKS.md):
//!
//! ```sh
//! cargo bench -p mappings --bench throughput            # ~20 s
//! cargo bench -p mappings --bench throughput -- 5       # seconds per measurement (default 3)
//! ```
//!
//! Timings on a shared machine are noisy; instruction counts are not. `calls PIPELINE SIDE N`
//! runs one side N times and nothing else, for `valgrind --tool=callgrind` (instructions per
//! document = (count at N - count at 0) / N):
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/throughput-HASH calls sdm ours 200   # PIPELINE sdm|rows, SIDE ours|raw
//! ```
//!
//! | pipeline | ours | raw baseline |
//! |---|---|---|
//! | SDM → NMPP → Athena XML | `Source::parse` of the SDM text (the engine's borrowed tree, as a delivery reads a stored payload), `sdm_source_to_nmpp` (NMPP schema check included), `nmpp_to_athena_xml` | `serde_json` parse of the same SDM text into a `Value`, then quick-xml reading the Athena XML we produce and writing it back event by event |
//! | warehouse rows → NMPP | `Source::parse` of the row set, `map_source(warehouse-to-nmpp-case)` (schema check included), `serde_json` serialise | `serde_json` parse of the same row set into a `Value` and serialise |
//! | SDM ingest check | `Source::parse` of the SDM text and `validate_sdm_source` (what `POST /incidents` runs on each body) | `serde_json` parse into a `Value` and `validate_sdm` (what it ran before) |
//!
//! Both sides run alternately in rounds of the same length; the figure is the median round.
//! Like the `nmpp-gateway` binary, the harness allocates with mimalloc.

use std::hint::black_box;

/// The allocator the gateway binary uses, so that both sides allocate as in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use mappings::{Mappings, Source};
use quick_xml::events::Event;
use serde_json::Value;

/// The online crime report padded to about 5 KB with a realistic form copy (as the ingest
/// benchmark sends).
fn sdm_text() -> String {
    let mut doc: Value =
        serde_json::from_str(include_str!("../tests/cases/victim-guardian/input.json"))
            .unwrap_or_default();
    let content =
        "Q: What happened? A: My son's bike was taken from the rack outside school. ".repeat(40);
    if let Some(sub) = doc["included"]
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|e| e["type"] == "submission"))
    {
        sub["attributes"]["submissionContent"] = Value::String(content);
    }
    serde_json::to_string(&doc).unwrap_or_default()
}

fn rows_text() -> String {
    include_str!("../tests/cases/warehouse-case-rows/input.json").to_owned()
}

/// quick-xml alone: read every event of `xml` and write it back.
fn quick_xml_copy(xml: &str) -> Vec<u8> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    loop {
        match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(e) => {
                let _ = writer.write_event(e);
            }
        }
    }
    writer.into_inner()
}

/// Runs `f` repeatedly for `period`; returns operations per second.
fn rate(period: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < period {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn compare(name: &str, seconds: f64, mut ours: impl FnMut(), mut raw: impl FnMut()) {
    let rounds = 5;
    let period = Duration::from_secs_f64(seconds / rounds as f64);
    // Warm up both.
    rate(Duration::from_millis(200), &mut ours);
    rate(Duration::from_millis(200), &mut raw);
    let (mut o, mut r) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        o.push(rate(period, &mut ours));
        r.push(rate(period, &mut raw));
    }
    let (o, r) = (median(o), median(r));
    println!(
        "{name:<32} ours {o:>10.0}/s ({:>7.1} µs)   raw {r:>10.0}/s ({:>7.1} µs)   ours/raw {:>5.1}%",
        1e6 / o,
        1e6 / r,
        100.0 * o / r
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    let sdm = sdm_text();
    let doc: Value = serde_json::from_str(&sdm).unwrap_or_default();
    let nmpp = m.sdm_to_nmpp(&doc).unwrap_or_else(|e| panic!("{e}"));
    let xml = m
        .nmpp_to_athena_xml(&nmpp)
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = rows_text();
    // The two sides of each comparison.
    let sdm_ours = || {
        let n = Source::parse(black_box(sdm.as_bytes()))
            .map(|s| m.sdm_source_to_nmpp(&s).unwrap_or_default())
            .unwrap_or_default();
        black_box(m.nmpp_to_athena_xml(&n).unwrap_or_default());
    };
    let sdm_raw = || {
        let v: Value = serde_json::from_str(black_box(&sdm)).unwrap_or_default();
        black_box(&v);
        black_box(quick_xml_copy(black_box(&xml)));
    };
    let rows_ours = || {
        let n = Source::parse(black_box(rows.as_bytes()))
            .map(|s| {
                m.map_source(mappings::WAREHOUSE_TO_NMPP_CASE, &s)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        black_box(serde_json::to_string(&n).unwrap_or_default());
    };
    let rows_raw = || {
        let v: Value = serde_json::from_str(black_box(&rows)).unwrap_or_default();
        black_box(serde_json::to_string(&v).unwrap_or_default());
    };
    if let Some(at) = args.iter().position(|a| a == "calls") {
        let arg = |i: usize| args.get(at + i).map(String::as_str);
        let n: u64 = arg(3).and_then(|a| a.parse().ok()).unwrap_or(0);
        let mut side: Box<dyn FnMut() + '_> = match (arg(1), arg(2)) {
            (Some("sdm"), Some("ours")) => Box::new(sdm_ours),
            (Some("sdm"), Some("raw")) => Box::new(sdm_raw),
            (Some("rows"), Some("ours")) => Box::new(rows_ours),
            (Some("rows"), Some("raw")) => Box::new(rows_raw),
            _ => panic!("usage: calls sdm|rows ours|raw N"),
        };
        for _ in 0..n {
            side();
        }
        return;
    }
    let seconds: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3.0);
    println!(
        "documents: SDM {} bytes, Athena XML {} bytes, warehouse row set {} bytes; {seconds} s per side",
        sdm.len(),
        xml.len(),
        rows.len()
    );
    compare("SDM -> NMPP -> Athena XML", seconds, sdm_ours, sdm_raw);
    compare("warehouse rows -> NMPP", seconds, rows_ours, rows_raw);
    // The ingest check `POST /incidents` runs on every body: parse and validate_sdm, over the
    // borrowed tree (as the gateway does) beside over a `serde_json::Value` (as it did).
    compare(
        "SDM ingest check (vs via Value)",
        seconds,
        || {
            let ok = Source::parse(black_box(sdm.as_bytes()))
                .is_ok_and(|s| mappings::validate_sdm_source(&s).is_ok());
            black_box(ok);
        },
        || {
            let ok = serde_json::from_str::<Value>(black_box(&sdm))
                .is_ok_and(|v| mappings::validate_sdm(&v).is_ok());
            black_box(ok);
        },
    );
    // Where the time goes (not compared).
    let t = |f: &mut dyn FnMut()| 1e6 / rate(Duration::from_millis(500), f);
    println!(
        "  parts: validate_sdm {:.1} µs, sdm_to_nmpp {:.1} µs (NMPP schema check {:.1} µs), nmpp_to_athena_xml {:.1} µs",
        t(&mut || {
            black_box(mappings::validate_sdm(&doc).is_ok());
        }),
        t(&mut || {
            black_box(m.sdm_to_nmpp(&doc).is_ok());
        }),
        t(&mut || {
            black_box(mappings::model::validate(&nmpp).is_ok());
        }),
        t(&mut || {
            black_box(m.nmpp_to_athena_xml(&nmpp).is_ok());
        }),
    );
    let rows_doc: Value = serde_json::from_str(&rows).unwrap_or_default();
    let case = m
        .map(mappings::WAREHOUSE_TO_NMPP_CASE, &rows_doc)
        .unwrap_or_default();
    let rows_source = Source::parse(rows.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "  parts: parse rows into a Value {:.1} µs, into a Source {:.1} µs, serialise rows {:.1} µs, map rows from the Source (schema check included) {:.1} µs, from a Value (as the warehouse adapter holds them) {:.1} µs (NMPP case schema check {:.1} µs), serialise case {:.1} µs",
        t(&mut || {
            black_box(serde_json::from_str::<Value>(black_box(&rows)).is_ok());
        }),
        t(&mut || {
            black_box(Source::parse(black_box(rows.as_bytes())).is_ok());
        }),
        t(&mut || {
            black_box(serde_json::to_string(&rows_doc).is_ok());
        }),
        t(&mut || {
            black_box(
                m.map_source(mappings::WAREHOUSE_TO_NMPP_CASE, &rows_source)
                    .is_ok(),
            );
        }),
        t(&mut || {
            black_box(m.map(mappings::WAREHOUSE_TO_NMPP_CASE, &rows_doc).is_ok());
        }),
        t(&mut || {
            black_box(mappings::model::validate_model("nmpp-case@1", &case).is_ok());
        }),
        t(&mut || {
            black_box(serde_json::to_string(&case).is_ok());
        }),
    );
}
