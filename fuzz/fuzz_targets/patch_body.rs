//! libFuzzer entry point; the input format and the checks are in `src/patch_body.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| usersvc_fuzz::patch_body::check(data));
