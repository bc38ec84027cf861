#![no_main]
//! Fuzz target: see `mappings::fuzzing::warehouse_rows`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mappings::fuzzing::warehouse_rows(data));
