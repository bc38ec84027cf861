#![no_main]
//! Fuzz target: see `mappings::fuzzing::athena_xml`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mappings::fuzzing::athena_xml(data));
