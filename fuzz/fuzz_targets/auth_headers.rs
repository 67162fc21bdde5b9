//! libFuzzer entry point; the input format and the checks are in `src/auth_headers.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| usersvc_fuzz::auth_headers::check(data));
