//! Fuzzing regressions (see `fuzz/README.md`). The fuzz targets' checks live in `fuzz/src/`;
//! this file includes those same files and, on every `cargo test`, replays through them
//!
//! * every input of the committed, minimized corpora (`fuzz/corpus/<target>/`) and of the
//!   hand-written seeds (`fuzz/seeds/<target>/`), and
//! * every crash input ever found (`fuzz/regressions/<target>/`: a libFuzzer artifact is
//!   copied there once its bug is fixed, so it can never come back),
//!
//! plus named edge cases that the fuzzing runs made interesting. No fuzzing happens here and
//! no nightly toolchain is needed.

use std::path::Path;

use serde_json::{Value, json};
use usersvc::auth::{session, totp};
use usersvc::http::bearer_token;
use usersvc::http::router::Route;

#[path = "../fuzz/src/auth_headers.rs"]
mod auth_headers;
#[path = "../fuzz/src/patch_body.rs"]
mod patch_body;
#[path = "../fuzz/src/route_parse.rs"]
mod route_parse;
#[path = "../fuzz/src/two_factor_codes.rs"]
mod two_factor_codes;

/// Runs `check` on every file of `fuzz/{corpus,seeds,regressions}/<target>/`, naming the file
/// that fails; returns how many ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "seeds", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("fuzz input {} fails (see the panic above)", path.display());
        }
    }
    files.len()
}

#[test]
fn route_parse_inputs_replay() {
    assert!(replay("route_parse", route_parse::check) > 0);
}

#[test]
fn auth_headers_inputs_replay() {
    assert!(replay("auth_headers", auth_headers::check) > 0);
}

#[test]
fn patch_body_inputs_replay() {
    assert!(replay("patch_body", patch_body::check) > 0);
}

#[test]
fn two_factor_codes_inputs_replay() {
    assert!(replay("two_factor_codes", two_factor_codes::check) > 0);
}

// --- Edge cases ---

#[test]
fn percent_decoding_cannot_smuggle_segments_into_a_lookup() {
    // `%2F` decodes to a slash before routing: it splits the segment, never hides inside one.
    assert_eq!(Route::parse("/api/users/a/b/"), None);
    assert_eq!(Route::parse("/api/users/a/b/hedgehog_config/"), None);
    // `%2E` decodes to a dot, which a lookup segment may not hold.
    assert_eq!(Route::parse("/api/users/../"), None);
    assert_eq!(
        Route::parse("/api/users/\u{fffd}/"),
        Some(Route::User("\u{fffd}".into()))
    );
    // Only one trailing slash is optional.
    assert_eq!(Route::parse("/api/users//"), None);
    assert_eq!(Route::parse("//api/users/"), None);
}

#[test]
fn credential_headers_edge_cases() {
    assert_eq!(bearer_token("Bearer \t phx_ab \t"), Some("phx_ab"));
    assert_eq!(bearer_token("Bearer x"), None);
    assert_eq!(bearer_token("Bearer\t\t"), None);
    assert_eq!(bearer_token("Bearer pha_"), None);
    // A value may hold `=`; a name must match exactly once trimmed; the first pair wins.
    assert_eq!(session::cookie("sessionid==a=b", "sessionid"), Some("=a=b"));
    assert_eq!(
        session::cookie(" sessionid =x;sessionid=y", "sessionid"),
        Some("x")
    );
    assert_eq!(session::cookie("xsessionid=x", "sessionid"), None);
    assert_eq!(session::cookie("sessionid", "sessionid"), None);
    assert!(session::check_csrf(Some(""), Some("")).is_err());
}

#[test]
fn deeply_nested_bodies_are_parse_errors_not_stack_overflows() {
    let nested = |depth: usize| {
        format!(
            "{{\"hedgehog_config\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    patch_body::check(nested(126).as_bytes());
    patch_body::check(nested(100_000).as_bytes());
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let err = usersvc::http::body::json_object(&headers, nested(100_000).as_bytes()).err();
    assert_eq!(err.map(|e| e.status().as_u16()), Some(400));
}

#[test]
fn totp_tokens_and_clocks_at_the_extremes() {
    for (v, expected) in [
        (json!(999_999), Some(999_999)),
        (json!(1_000_000), None),
        (json!(-1), None),
        (json!(1.0), None),
        (json!(u64::MAX), None),
        (json!("000000"), Some(0)),
        (json!("+12345"), None),
        (json!("\u{ff11}"), None),
        (json!(["1"]), None),
    ] {
        assert_eq!(totp::parse_token(&v), expected, "{v}");
    }
    // The clock can be anything an i64 holds without overflowing the step arithmetic.
    let secret = [7u8; 20];
    for now in [i64::MIN, -1, 0, i64::MAX] {
        let t = totp::step_at(now);
        let code = totp::code(&secret, t);
        let step = totp::matching_step(&secret, code, now, i64::MIN);
        assert!(
            step.is_some_and(|s| s == t - 1 || s == t),
            "{now}: {step:?}"
        );
        // Once step t is used, only t + 1 could still match.
        let replay = totp::matching_step(&secret, code, now, t);
        assert!(replay.is_none_or(|s| s == t + 1), "{now}: {replay:?}");
    }
    two_factor_codes::check(&[20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(totp::parse_token(&Value::String(" 12 ".into())), Some(12));
}
