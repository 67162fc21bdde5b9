//! libFuzzer entry point; the input format and the checks are in `src/two_factor_codes.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| usersvc_fuzz::two_factor_codes::check(data));
