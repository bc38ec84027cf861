#![no_main]
//! Fuzz target: see `mappings::fuzzing::sdm`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mappings::fuzzing::sdm(data));
