//! libFuzzer entry point; the input format and the checks are in `src/route_parse.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| usersvc_fuzz::route_parse::check(data));
