//! Input values parsed and checked the way PostHog's serializers (DRF and Django) do it, with the
//! same messages and codes (SPEC §10.2, reference §2, §4.1, §4.3, §5.3.5). Pure functions: no
//! database, no HTTP.
//!
//! Version notes, because the upstream behaviour moved over time:
//! * Booleans follow DRF ≥ 3.15, which compares strings case-insensitively (`"yEs"` is true).
//! * Emails follow Django ≥ 5.2's `EmailValidator`, whose domain pattern accepts Unicode letters
//!   directly (`a@münchen.de`), so no IDNA encoding is needed.
//! * Python's `str()`/`repr()` are reproduced for the values JSON can carry; the only gap is
//!   integers beyond 64 bits, which serde_json already holds as floats (`1e+20`, where Python
//!   would print every digit). Floats print exactly as Python would only if serde_json parsed
//!   them exactly, which takes its `float_roundtrip` feature (without it a 17-digit float can
//!   come out one unit in the last place off).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Number, Value, json};

use crate::error::{Error, Result};

const NULL_MESSAGE: &str = "This field may not be null.";
const BLANK_MESSAGE: &str = "This field may not be blank.";

/// Django's `EmailField` default (`max_length=254`).
pub const EMAIL_MAX_LENGTH: usize = 254;
/// Django's `MinimumLengthValidator` as PostHog configures it.
pub const PASSWORD_MIN_LENGTH: usize = 8;

// ---------------------------------------------------------------------------------------------
// Python-style printing
// ---------------------------------------------------------------------------------------------

/// The name of the Python type a JSON value becomes (`type(v).__name__`).
pub fn python_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `type(v)` as an f-string prints it: `<class 'str'>`.
fn python_class(v: &Value) -> String {
    format!("<class '{}'>", python_type_name(v))
}

/// Python's `repr()` of the value JSON decodes to: `None`, `True`, `1`, `0.5`, `'a'`, `[1, 2]`,
/// `{'a': [True, None]}`.
pub fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => number_repr(n),
        Value::String(s) => string_repr(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", string_repr(k), python_repr(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// Python's `str()` (what an f-string prints): like [`python_repr`] except that a top-level
/// string prints bare. Values inside lists and dicts are still repr'd, as in Python.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn number_repr(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        n.as_f64().map_or_else(|| n.to_string(), float_repr)
    }
}

/// `repr(float)`: the shortest digits that round-trip (see [`shortest_scientific`]), laid out
/// by CPython's rule: positional when the decimal exponent is in -4..16, else
/// scientific with a signed exponent of at least two digits (`1e-05`, `1e+16`).
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = shortest_scientific(f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // CPython's `decpt`: how many digits stand before the decimal point.
    let decpt = exponent + 1;
    let body = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{sign}{:02}", exponent.unsigned_abs())
    } else if decpt <= 0 {
        // decpt in -3..=0: zeros between the point and the digits.
        let zeros = usize::try_from(-decpt).unwrap_or(0);
        format!("0.{}{digits}", "0".repeat(zeros))
    } else {
        let before = usize::try_from(decpt).unwrap_or(0);
        if before >= digits.len() {
            format!("{digits}{}.0", "0".repeat(before - digits.len()))
        } else {
            format!("{}.{}", &digits[..before], &digits[before..])
        }
    };
    if f < 0.0 { format!("-{body}") } else { body }
}

/// The shortest round-tripping digits in `{:e}` form. Rust and CPython agree on how many digits
/// that takes; when two candidates are equally close (the double lies exactly halfway), CPython
/// takes the even last digit while Rust's shortest mode may round up. Re-rounding the exact
/// value to that many digits (Rust's exact mode breaks ties to even) gives CPython's choice.
fn shortest_scientific(f: f64) -> String {
    let shortest = format!("{f:e}");
    let digits = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.chars().filter(char::is_ascii_digit).count());
    let exact = format!("{:.*e}", digits.saturating_sub(1), f);
    if exact.parse::<f64>() == Ok(f) {
        exact
    } else {
        shortest
    }
}

/// `repr(str)`: single quotes unless the text has a `'` and no `"`; escapes as CPython writes
/// them (`\n`, `\x07`, `\u200b`, …); printable non-ASCII characters stay as they are.
fn string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c => {
                let code = u32::from(c);
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02x}")
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` for a non-ASCII character: false for controls (Cc), separators
/// (Zs, Zl, Zp), format characters (Cf), private use (Co) and noncharacters. Other unassigned
/// code points (Cn) would need the Unicode tables and are treated as printable.
fn is_printable(c: char) -> bool {
    !(c.is_control()
        || c.is_whitespace()
        || is_format_char(c)
        || is_private_use(c)
        || is_noncharacter(c))
}

/// U+FDD0..U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// General category Cf (Unicode 15).
fn is_format_char(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let code = u32::from(c);
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
}

/// General category Co.
fn is_private_use(c: char) -> bool {
    matches!(u32::from(c), 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

// ---------------------------------------------------------------------------------------------
// DRF fields
// ---------------------------------------------------------------------------------------------

fn null_error(attr: &str) -> Error {
    Error::field(attr, "null", NULL_MESSAGE)
}

/// Python's `str.strip()`: Rust's whitespace plus the four ASCII separators U+001C..U+001F,
/// which Python counts as whitespace and Rust does not.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// A DRF `CharField` that does not allow null: see [`nullable_string`].
pub fn string(attr: &str, v: &Value, max_len: usize, allow_blank: bool) -> Result<String> {
    nullable_string(attr, v, max_len, allow_blank)?.ok_or_else(|| null_error(attr))
}

/// A DRF `CharField(allow_null=True)`: null is `None`; strings are trimmed; numbers become
/// their Python string form (`1`, `1.5`); booleans, lists and objects are refused. Then, in
/// DRF's order: blank, `max_length` (counted in code points), null characters.
pub fn nullable_string(
    attr: &str,
    v: &Value,
    max_len: usize,
    allow_blank: bool,
) -> Result<Option<String>> {
    char_field(attr, v, max_len, allow_blank, "Not a valid string.")
}

/// DRF's `CharField.run_validation`; `invalid_message` is the field class's `invalid` message
/// (subclasses such as `EmailField` override it).
fn char_field(
    attr: &str,
    v: &Value,
    max_len: usize,
    allow_blank: bool,
    invalid_message: &'static str,
) -> Result<Option<String>> {
    let raw = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => number_repr(n),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            return Err(Error::field(attr, "invalid_input", invalid_message));
        }
    };
    let s = python_strip(&raw);
    if s.is_empty() {
        return if allow_blank {
            Ok(Some(String::new()))
        } else {
            Err(Error::field(attr, "blank", BLANK_MESSAGE))
        };
    }
    if s.chars().count() > max_len {
        return Err(Error::field(
            attr,
            "max_length",
            format!("Ensure this field has no more than {max_len} characters."),
        ));
    }
    // DRF's CharField always adds ProhibitNullCharactersValidator after the length check.
    if s.contains('\0') {
        return Err(Error::field(
            attr,
            "null_characters_not_allowed",
            "Null characters are not allowed.",
        ));
    }
    Ok(Some(s.to_owned()))
}

/// A DRF `BooleanField`. Strings are compared lowercased against DRF's sets (`t`, `y`, `yes`,
/// `true`, `on`, `1` / `f`, `n`, `no`, `false`, `off`, `0`); the numbers 1 and 0 (also `1.0`,
/// `0.0`) count too. With `allow_null`, null and the strings `"null"` and `""` give `None`.
pub fn boolean(attr: &str, v: &Value, allow_null: bool) -> Result<Option<bool>> {
    let parsed = match v {
        Value::Null if allow_null => Some(None),
        Value::Null => return Err(null_error(attr)),
        Value::Bool(b) => Some(Some(*b)),
        // Python: `1.0 in {1}` is true, so floats equal to 1 or 0 pass as well.
        Value::Number(n) => {
            let f = n.as_f64();
            if f == Some(1.0) {
                Some(Some(true))
            } else if f == Some(0.0) {
                Some(Some(false))
            } else {
                None
            }
        }
        Value::String(s) => match s.to_lowercase().as_str() {
            "t" | "y" | "yes" | "true" | "on" | "1" => Some(Some(true)),
            "f" | "n" | "no" | "false" | "off" | "0" => Some(Some(false)),
            "null" | "" if allow_null => Some(None),
            _ => None,
        },
        Value::Array(_) | Value::Object(_) => None,
    };
    parsed.ok_or_else(|| Error::field(attr, "invalid_input", "Must be a valid boolean."))
}

/// A DRF `ChoiceField`: the value's Python string form must be one of `choices` (so the number
/// 1 matches `"1"`, and `""` only if `""` is listed). Strings are not trimmed.
pub fn choice(attr: &str, v: &Value, choices: &[&str], allow_null: bool) -> Result<Option<String>> {
    if v.is_null() {
        return if allow_null {
            Ok(None)
        } else {
            Err(null_error(attr))
        };
    }
    let s = python_str(v);
    if choices.contains(&s.as_str()) {
        Ok(Some(s))
    } else {
        Err(Error::field(
            attr,
            "invalid_choice",
            format!("\"{s}\" is not a valid choice."),
        ))
    }
}

/// A DRF `EmailField` (max 254, not blank). DRF runs the field's validators in the order they
/// were added and reports the first failure: `CharField.__init__` adds the max-length and
/// null-character validators, and only then does `EmailField.__init__` append the
/// `EmailValidator`. So an over-long address reports `max_length`, not the format. A value
/// that is not a string or number fails with the field's own `invalid` message, which for
/// `EmailField` is the same "Enter a valid email address.".
pub fn email(attr: &str, v: &Value) -> Result<String> {
    const INVALID: &str = "Enter a valid email address.";
    let s =
        char_field(attr, v, EMAIL_MAX_LENGTH, false, INVALID)?.ok_or_else(|| null_error(attr))?;
    if is_valid_email(&s) {
        Ok(s)
    } else {
        Err(Error::field(attr, "invalid_input", INVALID))
    }
}

/// Non-ASCII characters that Python's case-insensitive regexes let into an ASCII letter class:
/// `İ` and `K` lowercase to `i` and `k`; `ı` and `ſ` are case-equivalent to `i` and `s`.
/// Django's user-part classes are compiled with `re.IGNORECASE`, so these are accepted there.
const CASE_FOLDED_LETTERS: [char; 4] = ['\u{130}', '\u{131}', '\u{17f}', '\u{212a}'];

/// Django's `EmailValidator` (5.2): at most 320 characters, the last `@` splits the address, the
/// user part is a dot-atom or a quoted string, and the domain is `localhost`, a domain name
/// (labels of letters — Unicode letters included — digits and inner hyphens; a final label
/// without digits, or an `xn--` label), or an IP literal `[1.2.3.4]` / `[::1]`. Django has no
/// `[IPv6:…]` form: `I`, `P` and `v` are outside its literal pattern.
pub fn is_valid_email(s: &str) -> bool {
    if s.is_empty() || s.chars().count() > 320 {
        return false;
    }
    let Some((user, domain)) = s.rsplit_once('@') else {
        return false;
    };
    is_valid_user_part(user) && (domain == "localhost" || is_valid_domain_part(domain))
}

fn is_valid_user_part(user: &str) -> bool {
    match user.strip_prefix('"') {
        Some(quoted) => is_valid_quoted_string(quoted),
        None => user.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || "-!#$%&'*+/=?^_`{}|~".contains(c)
                        || CASE_FOLDED_LETTERS.contains(&c)
                })
        }),
    }
}

/// The part after the opening quote: `([\001-\010\013\014\016-\037!#-\[\]-\177] |
/// \\[\001-\011\013\014\016-\177])* "` and nothing after the closing quote. Neither `"` nor `\`
/// is a plain character, so reading left to right needs no backtracking.
fn is_valid_quoted_string(rest: &str) -> bool {
    let plain = |c: char| {
        matches!(c, '\x01'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '!' | '#'..='[' | ']'..='\x7f')
            || CASE_FOLDED_LETTERS.contains(&c)
    };
    let escapable = |c: char| {
        matches!(c, '\x01'..='\x09' | '\x0b' | '\x0c' | '\x0e'..='\x7f')
            || CASE_FOLDED_LETTERS.contains(&c)
    };
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.next().is_none(),
            '\\' => {
                if !chars.next().is_some_and(escapable) {
                    return false;
                }
            }
            c if plain(c) => {}
            _ => return false,
        }
    }
    false
}

fn is_valid_domain_part(domain: &str) -> bool {
    is_valid_domain_name(domain) || is_valid_ip_literal(domain)
}

/// Django's `"^" + hostname_re + domain_re + tld_no_fqdn_re + "\Z"`. No label can hold a dot,
/// so checking label by label is the same as the regex.
fn is_valid_domain_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    !rest.is_empty() && rest.iter().all(|l| is_valid_label(l)) && is_valid_tld(tld)
}

/// Django's `ul` range: "Unicode letters" U+00A1..U+FFFF.
fn is_unicode_letter(c: char) -> bool {
    ('\u{a1}'..='\u{ffff}').contains(&c)
}

/// 1 to 63 of `[a-z ul 0-9-]`, not starting or ending with a hyphen.
fn is_valid_label(label: &str) -> bool {
    let len = label.chars().count();
    (1..=63).contains(&len)
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || is_unicode_letter(c))
}

/// `(?!-)(?:[a-z ul -]{2,63}|xn--[a-z0-9]{1,59})(?<!-)`: no digits unless punycode.
fn is_valid_tld(tld: &str) -> bool {
    let len = tld.chars().count();
    let plain = (2..=63).contains(&len)
        && !tld.starts_with('-')
        && !tld.ends_with('-')
        && tld
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-' || is_unicode_letter(c));
    let punycode = tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")) && {
        let body = &tld[4..];
        (1..=59).contains(&body.chars().count())
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || CASE_FOLDED_LETTERS.contains(&c))
    };
    plain || punycode
}

/// `\[([A-F0-9:.]+)\]` (case-insensitive), then Django's `validate_ipv46_address`: Python's
/// `IPv4Address` (no leading zeros), else its IPv6 parser with Django's 39-character cap.
fn is_valid_ip_literal(domain: &str) -> bool {
    let Some(ip) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    !ip.is_empty()
        && ip
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        && (ip.parse::<Ipv4Addr>().is_ok() || (ip.len() <= 39 && ip.parse::<Ipv6Addr>().is_ok()))
}

// ---------------------------------------------------------------------------------------------
// notification_settings (reference §4.3)
// ---------------------------------------------------------------------------------------------

const NOTIFICATION_SETTINGS: &str = "notification_settings";

/// Keys whose value maps IDs to booleans; writes merge into the stored map.
const NOTIFICATION_DICT_KEYS: [&str; 4] = [
    "project_weekly_digest_disabled",
    "error_tracking_weekly_digest_project_enabled",
    "web_analytics_weekly_digest_project_enabled",
    "organization_member_join_email_disabled",
];

const NOTIFICATION_BOOL_KEYS: [&str; 8] = [
    "plugin_disabled",
    "discussions_mentioned",
    "all_weekly_digest_disabled",
    "error_tracking_issue_assigned",
    "error_tracking_weekly_digest",
    "project_api_key_exposed",
    "materialized_view_sync_failed",
    "web_analytics_weekly_digest",
];

const THRESHOLD_KEY: &str = "data_pipeline_error_threshold";

/// `NOTIFICATION_DEFAULTS`, in upstream order.
pub fn notification_defaults() -> Map<String, Value> {
    [
        ("plugin_disabled", json!(true)),
        ("discussions_mentioned", json!(true)),
        ("project_weekly_digest_disabled", json!({})),
        ("all_weekly_digest_disabled", json!(false)),
        ("error_tracking_issue_assigned", json!(true)),
        ("error_tracking_weekly_digest", json!(true)),
        (THRESHOLD_KEY, json!(0.01)),
        ("project_api_key_exposed", json!(true)),
        ("materialized_view_sync_failed", json!(false)),
        ("web_analytics_weekly_digest", json!(true)),
        ("organization_member_join_email_disabled", json!({})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the API shows: `{**defaults, **stored}` (a stored key keeps the default's position).
pub fn notification_settings_for_output(stored: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut out = notification_defaults();
    if let Some(stored) = stored {
        out.extend(stored.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

/// Validates a written `notification_settings` value and returns the full map to store:
/// `{**defaults, **stored}` updated key by key in the order sent, with the ID maps merged
/// rather than replaced. Upstream saves this whole merge, defaults included (reference §4.3).
///
/// The field is a DRF `DictField` without `allow_null`, so null gets DRF's `null` error before
/// the type check.
pub fn merge_notification_settings(
    stored: &Map<String, Value>,
    incoming: &Value,
) -> Result<Map<String, Value>> {
    let incoming = match incoming {
        Value::Object(map) => map,
        Value::Null => return Err(null_error(NOTIFICATION_SETTINGS)),
        other => {
            return Err(Error::field(
                NOTIFICATION_SETTINGS,
                "not_a_dict",
                format!(
                    "Expected a dictionary of items but got type \"{}\".",
                    python_type_name(other)
                ),
            ));
        }
    };
    let mut merged = notification_settings_for_output(Some(stored));
    for (key, value) in incoming {
        let new_value = validate_notification_setting(key, value, merged.get(key))?;
        merged.insert(key.clone(), new_value);
    }
    Ok(merged)
}

/// One key of a write; returns the value to store. Messages are upstream's f-strings, so
/// values print with `str()` and types as `<class '…'>`.
fn validate_notification_setting(
    key: &str,
    value: &Value,
    current: Option<&Value>,
) -> Result<Value> {
    let invalid = |detail: String| Error::field(NOTIFICATION_SETTINGS, "invalid_input", detail);

    if NOTIFICATION_DICT_KEYS.contains(&key) {
        let Value::Object(entries) = value else {
            return Err(invalid(format!(
                "{key} must be a dictionary mapping IDs to boolean values"
            )));
        };
        if let Some(bad) = entries.values().find(|v| !v.is_boolean()) {
            return Err(invalid(format!(
                "Notification setting values must be boolean, got {} instead",
                python_class(bad)
            )));
        }
        // Upstream: `{**current.get(key, {}), **value}`; a stored non-object counts as empty.
        let mut map = current
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        map.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Value::Object(map))
    } else if key == THRESHOLD_KEY {
        // Python's `isinstance(value, (int, float))` admits booleans (True is 1).
        let number = match value {
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            other => {
                return Err(invalid(format!(
                    "{THRESHOLD_KEY} must be a number, got {} instead",
                    python_class(other)
                )));
            }
        };
        if !(0.0..=1.0).contains(&number) {
            return Err(invalid(format!(
                "{THRESHOLD_KEY} must be between 0.0 and 1.0, got {}",
                python_str(value)
            )));
        }
        // Stored as `float(value)`: 1 becomes 1.0.
        Ok(Value::from(number))
    } else if NOTIFICATION_BOOL_KEYS.contains(&key) {
        if value.is_boolean() {
            Ok(value.clone())
        } else {
            Err(invalid(format!(
                "{} is not a valid type for notification settings, should be <class 'bool'>",
                python_str(value)
            )))
        }
    } else {
        Err(invalid(format!(
            "Key {key} is not valid as a key for notification settings"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Passwords (SPEC §4.2, reference §5.3.5)
// ---------------------------------------------------------------------------------------------

/// Django's `validate_password` with PostHog's validators, first failure only: the minimum
/// length (in code points), then PostHog's `ZxcvbnValidator` (score ≥ 3, message = the
/// suggestions joined by spaces, without the warning). Upstream calls zxcvbn without user
/// inputs; pass `&[]` for the same scores. Blank and max-length are [`string`]'s job.
pub fn check_password_strength(password: &str, user_inputs: &[&str]) -> Result<()> {
    if password.chars().count() < PASSWORD_MIN_LENGTH {
        return Err(Error::field(
            "password",
            "invalid_input",
            "This password is too short. It must contain at least 8 characters.",
        ));
    }
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    if u8::from(entropy.score()) >= 3 {
        return Ok(());
    }
    let suggestions = entropy
        .feedback()
        .map(|f| {
            f.suggestions()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let detail = if suggestions.is_empty() {
        "This password is too weak.".to_owned()
    } else {
        suggestions
    };
    Err(Error::field("password", "invalid_input", detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T: std::fmt::Debug>(r: Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }

    /// (code, detail, attr) of a validation error.
    fn err<T: std::fmt::Debug>(r: Result<T>) -> (String, String, Option<String>) {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => (e.code().to_owned(), e.detail(), e.attr().map(str::to_owned)),
        }
    }

    fn err_detail<T: std::fmt::Debug>(r: Result<T>) -> String {
        err(r).1
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn keys(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    // --- Python printing ---

    #[test]
    fn repr_scalars() {
        assert_eq!(python_repr(&json!(null)), "None");
        assert_eq!(python_repr(&json!(true)), "True");
        assert_eq!(python_repr(&json!(false)), "False");
        assert_eq!(python_repr(&json!(1)), "1");
        assert_eq!(python_repr(&json!(-7)), "-7");
        assert_eq!(python_repr(&json!(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn repr_floats_like_python() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-0.1, "-0.1"),
            (1.5, "1.5"),
            (0.01, "0.01"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e20, "1e+20"),
            (1.2345e100, "1.2345e+100"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.7, "1234567890123456.8"),
            (123.456, "123.456"),
            (0.1 + 0.2, "0.30000000000000004"),
            // Exactly halfway between two 17-digit strings: Python keeps the even digit.
            (-1915979043632334.2, "-1915979043632334.2"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(python_repr(&json!(f)), want, "{f:e}");
        }
    }

    #[test]
    fn repr_strings_like_python() {
        assert_eq!(python_repr(&json!("a")), "'a'");
        assert_eq!(python_repr(&json!("it's")), "\"it's\"");
        assert_eq!(python_repr(&json!("it's \"x\"")), "'it\\'s \"x\"'");
        assert_eq!(python_repr(&json!("a\\b")), "'a\\\\b'");
        assert_eq!(
            python_repr(&json!("\t\n\r\u{7}\u{7f}")),
            "'\\t\\n\\r\\x07\\x7f'"
        );
        assert_eq!(python_repr(&json!("é ü 日本")), "'é ü 日本'");
        assert_eq!(
            python_repr(&json!(
                "\u{85}\u{a0}\u{200b}\u{2028}\u{e000}\u{fdd0}\u{10fffd}\u{10ffff}"
            )),
            "'\\x85\\xa0\\u200b\\u2028\\ue000\\ufdd0\\U0010fffd\\U0010ffff'"
        );
        assert_eq!(python_repr(&json!("😀")), "'😀'");
    }

    #[test]
    fn repr_containers_and_str() {
        let v = json!({"a": 1, "b": [true, null], "c": "x", "d": {"e": 1.5}});
        assert_eq!(
            python_repr(&v),
            "{'a': 1, 'b': [True, None], 'c': 'x', 'd': {'e': 1.5}}"
        );
        assert_eq!(python_repr(&json!([])), "[]");
        assert_eq!(python_repr(&json!({})), "{}");
        assert_eq!(python_str(&json!("yes")), "yes");
        assert_eq!(python_str(&json!(["yes", 1])), "['yes', 1]");
        assert_eq!(python_str(&json!(null)), "None");
    }

    #[test]
    fn type_names() {
        let cases = [
            (json!("s"), "str"),
            (json!(1), "int"),
            (json!(1.0), "float"),
            (json!(true), "bool"),
            (json!(null), "NoneType"),
            (json!([]), "list"),
            (json!({}), "dict"),
        ];
        for (v, name) in cases {
            assert_eq!(python_type_name(&v), name);
        }
    }

    // --- string ---

    #[test]
    fn string_trims_and_converts_numbers() {
        assert_eq!(ok(string("f", &json!("  Ann \n"), 150, false)), "Ann");
        assert_eq!(ok(string("f", &json!(12), 150, false)), "12");
        assert_eq!(ok(string("f", &json!(1.5), 150, false)), "1.5");
        assert_eq!(ok(string("f", &json!(2.0), 150, false)), "2.0");
        // Python also strips U+001C..U+001F and Unicode spaces.
        assert_eq!(
            ok(string("f", &json!("\u{1f}\u{a0}x\u{3000}"), 150, false)),
            "x"
        );
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            err(string("first_name", &json!(null), 150, true)),
            (
                "null".into(),
                "This field may not be null.".into(),
                Some("first_name".into())
            )
        );
        for v in [json!(true), json!([1]), json!({"a": 1})] {
            let (code, detail, _) = err(string("f", &v, 150, true));
            assert_eq!(
                (code.as_str(), detail.as_str()),
                ("invalid_input", "Not a valid string.")
            );
        }
        let (code, detail, _) = err(string("f", &json!("   "), 150, false));
        assert_eq!(
            (code.as_str(), detail.as_str()),
            ("blank", "This field may not be blank.")
        );
        assert_eq!(ok(string("f", &json!("   "), 150, true)), "");
        assert_eq!(ok(string("f", &json!(""), 150, true)), "");
        let (code, detail, _) = err(string("f", &json!("x".repeat(151)), 150, false));
        assert_eq!(code, "max_length");
        assert_eq!(detail, "Ensure this field has no more than 150 characters.");
        let (code, _, _) = err(string("f", &json!("a\u{0}b"), 150, false));
        assert_eq!(code, "null_characters_not_allowed");
    }

    #[test]
    fn string_length_counts_code_points() {
        let s = "é".repeat(150);
        assert_eq!(ok(string("f", &json!(s), 150, false)).chars().count(), 150);
        assert!(string("f", &json!("é".repeat(151)), 150, false).is_err());
    }

    #[test]
    fn nullable_string_allows_null() {
        assert_eq!(ok(nullable_string("f", &json!(null), 10, false)), None);
        assert_eq!(
            ok(nullable_string("f", &json!(" a "), 10, false)),
            Some("a".into())
        );
    }

    // --- boolean ---

    #[test]
    fn boolean_spellings() {
        for v in [
            json!(true),
            json!("true"),
            json!("True"),
            json!("TRUE"),
            json!("t"),
            json!("T"),
            json!("y"),
            json!("Y"),
            json!("yes"),
            json!("Yes"),
            json!("on"),
            json!("ON"),
            json!("1"),
            json!(1),
            json!(1.0),
        ] {
            assert_eq!(ok(boolean("b", &v, false)), Some(true), "{v}");
        }
        for v in [
            json!(false),
            json!("false"),
            json!("False"),
            json!("f"),
            json!("F"),
            json!("n"),
            json!("No"),
            json!("off"),
            json!("OFF"),
            json!("0"),
            json!(0),
            json!(0.0),
            json!(-0.0),
        ] {
            assert_eq!(ok(boolean("b", &v, false)), Some(false), "{v}");
        }
    }

    #[test]
    fn boolean_rejects_and_nulls() {
        for v in [
            json!(2),
            json!(0.5),
            json!("maybe"),
            json!(" true"),
            json!([]),
            json!({}),
            json!(""),
        ] {
            let (code, detail, attr) = err(boolean("anonymize_data", &v, false));
            assert_eq!(code, "invalid_input", "{v}");
            assert_eq!(detail, "Must be a valid boolean.");
            assert_eq!(attr.as_deref(), Some("anonymize_data"));
        }
        assert_eq!(err(boolean("b", &json!(null), false)).0, "null");
        assert_eq!(ok(boolean("b", &json!(null), true)), None);
        assert_eq!(ok(boolean("b", &json!("NULL"), true)), None);
        assert_eq!(ok(boolean("b", &json!(""), true)), None);
        assert!(boolean("b", &json!("null"), false).is_err());
    }

    // --- choice ---

    #[test]
    fn choice_field() {
        let choices = ["light", "dark", "system", ""];
        assert_eq!(
            ok(choice("theme_mode", &json!("dark"), &choices, true)),
            Some("dark".into())
        );
        assert_eq!(
            ok(choice("theme_mode", &json!(""), &choices, true)),
            Some(String::new())
        );
        assert_eq!(ok(choice("theme_mode", &json!(null), &choices, true)), None);
        assert_eq!(
            err(choice("theme_mode", &json!("Dark"), &choices, true)),
            (
                "invalid_choice".into(),
                "\"Dark\" is not a valid choice.".into(),
                Some("theme_mode".into())
            )
        );
        // Not trimmed.
        assert!(choice("theme_mode", &json!(" dark"), &choices, true).is_err());

        let roles = ["engineering", "data", "other"];
        assert_eq!(
            err_detail(choice("role_at_organization", &json!(""), &roles, false)),
            "\"\" is not a valid choice."
        );
        assert_eq!(
            err(choice("role_at_organization", &json!(null), &roles, false)).0,
            "null"
        );
        assert_eq!(
            err_detail(choice("r", &json!(true), &roles, false)),
            "\"True\" is not a valid choice."
        );
        assert_eq!(
            err_detail(choice("r", &json!([1, "a"]), &roles, false)),
            "\"[1, 'a']\" is not a valid choice."
        );
        assert_eq!(
            ok(choice("n", &json!(1), &["1", "2"], false)),
            Some("1".into())
        );
    }

    // --- email ---

    #[test]
    fn valid_emails() {
        for s in [
            "user@example.com",
            "first.last+tag@sub.example.co.uk",
            "a@b.cd",
            "user@localhost",
            "user@[127.0.0.1]",
            "user@[::1]",
            "user@[2001:db8::1]",
            "\"quoted\\ name\"@example.com",
            "\"\"@example.com",
            "\"a\\\"b\"@example.com",
            "weird!#$%&'*+/=?^_`{}|~-@example.com",
            "user@münchen.de",
            "user@example.xn--p1ai",
            "user@1.2.3.example.com",
            "bılgi@example.com",
            "UPPER@EXAMPLE.COM",
            "user@xn--80ak6aa92e.com",
        ] {
            assert!(is_valid_email(s), "{s}");
        }
    }

    #[test]
    fn invalid_emails() {
        let long_local = format!("{}@example.com", "a".repeat(309));
        assert_eq!(long_local.chars().count(), 321);
        for s in [
            "",
            "plain",
            "@example.com",
            "user@",
            "user@example",
            "user@LOCALHOST",
            "user@example.com.",
            "user@-example.com",
            "user@example-.com",
            "user@example.c",
            "user@example.c0m",
            "user@example.123",
            "user@example..com",
            ".user@example.com",
            "user.@example.com",
            "us..er@example.com",
            "us er@example.com",
            "user@exa mple.com",
            "user@[IPv6:::1]",
            "user@[1.2.3]",
            "user@[01.2.3.4]",
            "user@[999.1.1.1]",
            "\"unclosed@example.com",
            "\"a\"b\"@example.com",
            "üser@example.com",
            "user@😀.com",
            "a@b@example.com",
            "\"quoted name\"@example.com",
            long_local.as_str(),
        ] {
            assert!(!is_valid_email(s), "{s}");
        }
        let label = "a".repeat(64);
        assert!(!is_valid_email(&format!("u@{label}.com")));
        assert!(is_valid_email(&format!("u@{}.com", "a".repeat(63))));
    }

    #[test]
    fn email_field_order() {
        assert_eq!(ok(email("email", &json!("  a@b.cd "))), "a@b.cd");
        let (code, detail, attr) = err(email("email", &json!("nope")));
        assert_eq!(
            (code.as_str(), detail.as_str(), attr.as_deref()),
            (
                "invalid_input",
                "Enter a valid email address.",
                Some("email")
            )
        );
        // Too long and invalid: the length validator comes first in DRF.
        let long = format!("{}@@", "a".repeat(260));
        assert_eq!(err(email("email", &json!(long))).0, "max_length");
        assert_eq!(err(email("email", &json!(""))).0, "blank");
        assert_eq!(err(email("email", &json!(null))).0, "null");
        assert_eq!(
            err(email("email", &json!(5))),
            (
                "invalid_input".into(),
                "Enter a valid email address.".into(),
                Some("email".into())
            )
        );
        // Non-strings get the EmailField's own `invalid` message, not CharField's.
        assert_eq!(
            err_detail(email("email", &json!({}))),
            "Enter a valid email address."
        );
        assert_eq!(
            err_detail(email("email", &json!(true))),
            "Enter a valid email address."
        );
    }

    // --- notification settings ---

    #[test]
    fn defaults_in_order() {
        let d = notification_defaults();
        assert_eq!(
            keys(&d),
            [
                "plugin_disabled",
                "discussions_mentioned",
                "project_weekly_digest_disabled",
                "all_weekly_digest_disabled",
                "error_tracking_issue_assigned",
                "error_tracking_weekly_digest",
                "data_pipeline_error_threshold",
                "project_api_key_exposed",
                "materialized_view_sync_failed",
                "web_analytics_weekly_digest",
                "organization_member_join_email_disabled",
            ]
        );
        assert_eq!(
            serde_json::to_string(&d).unwrap_or_default(),
            r#"{"plugin_disabled":true,"discussions_mentioned":true,"project_weekly_digest_disabled":{},"all_weekly_digest_disabled":false,"error_tracking_issue_assigned":true,"error_tracking_weekly_digest":true,"data_pipeline_error_threshold":0.01,"project_api_key_exposed":true,"materialized_view_sync_failed":false,"web_analytics_weekly_digest":true,"organization_member_join_email_disabled":{}}"#
        );
    }

    #[test]
    fn output_overlays_stored_on_defaults() {
        assert_eq!(
            notification_settings_for_output(None),
            notification_defaults()
        );
        let stored = object(json!({"zzz_legacy": 1, "plugin_disabled": false}));
        let out = notification_settings_for_output(Some(&stored));
        assert_eq!(out["plugin_disabled"], json!(false));
        assert_eq!(keys(&out)[0], "plugin_disabled");
        assert_eq!(keys(&out).last().copied(), Some("zzz_legacy"));
    }

    #[test]
    fn merge_keeps_order_and_merges_id_maps() {
        let stored = object(json!({"project_weekly_digest_disabled": {"123": true}}));
        let incoming = json!({
            "web_analytics_weekly_digest_project_enabled": {"7": true},
            "project_weekly_digest_disabled": {"456": true, "123": false},
            "plugin_disabled": false,
            "data_pipeline_error_threshold": 1,
        });
        let merged = ok(merge_notification_settings(&stored, &incoming));
        assert_eq!(
            merged["project_weekly_digest_disabled"],
            json!({"123": false, "456": true})
        );
        assert_eq!(merged["plugin_disabled"], json!(false));
        assert_eq!(
            serde_json::to_string(&merged["data_pipeline_error_threshold"]).unwrap_or_default(),
            "1.0"
        );
        // Defaults first, in their order; new keys at the end.
        let k = keys(&merged);
        assert_eq!(k.len(), 12);
        assert_eq!(k[2], "project_weekly_digest_disabled");
        assert_eq!(k[11], "web_analytics_weekly_digest_project_enabled");
        // A second write adds to the map, never removes.
        let again = ok(merge_notification_settings(
            &merged,
            &json!({"web_analytics_weekly_digest_project_enabled": {"8": false}}),
        ));
        assert_eq!(
            again["web_analytics_weekly_digest_project_enabled"],
            json!({"7": true, "8": false})
        );
    }

    #[test]
    fn merge_threshold_accepts_bool_and_range() {
        let empty = Map::new();
        let m = ok(merge_notification_settings(
            &empty,
            &json!({"data_pipeline_error_threshold": true}),
        ));
        assert_eq!(m[THRESHOLD_KEY], json!(1.0));
        let m = ok(merge_notification_settings(
            &empty,
            &json!({"data_pipeline_error_threshold": 0}),
        ));
        assert_eq!(m[THRESHOLD_KEY], json!(0.0));
        for (v, shown) in [(json!(1.5), "1.5"), (json!(2), "2"), (json!(-0.1), "-0.1")] {
            assert_eq!(
                err_detail(merge_notification_settings(
                    &empty,
                    &json!({"data_pipeline_error_threshold": v})
                )),
                format!("data_pipeline_error_threshold must be between 0.0 and 1.0, got {shown}")
            );
        }
        assert_eq!(
            err_detail(merge_notification_settings(
                &empty,
                &json!({"data_pipeline_error_threshold": "0.5"})
            )),
            "data_pipeline_error_threshold must be a number, got <class 'str'> instead"
        );
    }

    #[test]
    fn merge_errors_verbatim() {
        let empty = Map::new();
        let check = |incoming: Value, code: &str, detail: &str| {
            let (c, d, a) = err(merge_notification_settings(&empty, &incoming));
            assert_eq!((c.as_str(), d.as_str()), (code, detail), "{incoming}");
            assert_eq!(a.as_deref(), Some("notification_settings"));
        };
        check(
            json!("x"),
            "not_a_dict",
            "Expected a dictionary of items but got type \"str\".",
        );
        check(
            json!([1]),
            "not_a_dict",
            "Expected a dictionary of items but got type \"list\".",
        );
        check(json!(null), "null", "This field may not be null.");
        check(
            json!({"nope": true}),
            "invalid_input",
            "Key nope is not valid as a key for notification settings",
        );
        check(
            json!({"plugin_disabled": 1}),
            "invalid_input",
            "1 is not a valid type for notification settings, should be <class 'bool'>",
        );
        check(
            json!({"plugin_disabled": "yes"}),
            "invalid_input",
            "yes is not a valid type for notification settings, should be <class 'bool'>",
        );
        check(
            json!({"plugin_disabled": null}),
            "invalid_input",
            "None is not a valid type for notification settings, should be <class 'bool'>",
        );
        check(
            json!({"plugin_disabled": ["a", {"b": 1.0}]}),
            "invalid_input",
            "['a', {'b': 1.0}] is not a valid type for notification settings, should be <class 'bool'>",
        );
        check(
            json!({"project_weekly_digest_disabled": true}),
            "invalid_input",
            "project_weekly_digest_disabled must be a dictionary mapping IDs to boolean values",
        );
        check(
            json!({"organization_member_join_email_disabled": {"1": "true"}}),
            "invalid_input",
            "Notification setting values must be boolean, got <class 'str'> instead",
        );
        check(
            json!({"project_weekly_digest_disabled": {"1": null}}),
            "invalid_input",
            "Notification setting values must be boolean, got <class 'NoneType'> instead",
        );
        // The first bad key in the order sent wins.
        check(
            json!({"plugin_disabled": 0, "nope": true}),
            "invalid_input",
            "0 is not a valid type for notification settings, should be <class 'bool'>",
        );
        check(
            json!({"nope": true, "plugin_disabled": 0}),
            "invalid_input",
            "Key nope is not valid as a key for notification settings",
        );
    }

    #[test]
    fn merge_of_empty_object_stores_defaults() {
        let merged = ok(merge_notification_settings(&Map::new(), &json!({})));
        assert_eq!(merged, notification_defaults());
    }

    // --- passwords ---

    #[test]
    fn password_too_short() {
        let (code, detail, attr) = err(check_password_strength("Ab1!xyz", &[]));
        assert_eq!(code, "invalid_input");
        assert_eq!(
            detail,
            "This password is too short. It must contain at least 8 characters."
        );
        assert_eq!(attr.as_deref(), Some("password"));
        // Code points, not bytes: seven accented letters are still too short.
        assert!(check_password_strength("ééééééé", &[]).is_err());
    }

    #[test]
    fn password_too_weak_gives_suggestions() {
        let (code, detail, attr) = err(check_password_strength("password", &[]));
        assert_eq!(code, "invalid_input");
        assert_eq!(attr.as_deref(), Some("password"));
        assert_eq!(
            detail,
            "Add another word or two. Uncommon words are better."
        );
        let detail = err_detail(check_password_strength("Password1", &[]));
        assert_eq!(
            detail,
            "Add another word or two. Uncommon words are better. Capitalization doesn't help very much."
        );
        let detail = err_detail(check_password_strength("abcdefgh", &[]));
        assert_eq!(
            detail,
            "Add another word or two. Uncommon words are better. Avoid sequences."
        );
    }

    #[test]
    fn strong_password_passes() {
        ok(check_password_strength("correct horse battery staple", &[]));
        ok(check_password_strength("vT9#qL2!mZ8@wR4x", &[]));
    }
}
