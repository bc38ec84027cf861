#![no_main]
//! Fuzz target: see `mappings::fuzzing::storm_xml`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mappings::fuzzing::storm_xml(data));
