//! Personal API keys: `phx_` + 43 base62 characters (256 bits), stored as `sha256$<hex>`.

pub const PREFIX: &str = "phx_";
const BODY_LEN: usize = 43;

pub const SCOPES: &[&str] = &["*", "user:read", "user:write"];

/// A new key value. 43 base62 characters carry 256 bits (62^43 > 2^256).
pub fn generate() -> String {
    format!("{PREFIX}{}", super::random_base62(BODY_LEN))
}

/// The stored form of a key: unsalted SHA-256, cheap by design so a lookup costs microseconds.
pub fn digest(key: &str) -> String {
    super::token_digest(key)
}

/// `phx_...` + the last four characters.
pub fn mask(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}...{tail}", key.chars().take(4).collect::<String>())
}

/// A new key id: 32 base62 characters.
pub fn new_id() -> String {
    super::random_base62(32)
}

/// Does a key with these scopes grant `needed` (`user:read` or `user:write`)?
/// `*` grants all; `user:write` implies `user:read`; an empty list grants nothing.
pub fn grants(scopes: &[String], needed: &str) -> bool {
    scopes
        .iter()
        .any(|s| s == "*" || s == needed || (needed == "user:read" && s == "user:write"))
}

/// Parses a comma-separated scope list: trimmed, duplicates removed, order kept.
/// Empty → `Err(None)`; an unknown scope → `Err(Some(scope))`.
pub fn parse_scopes<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, Option<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in items {
        if !SCOPES.contains(&s) {
            return Err(Some(s.to_owned()));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err(None);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_upstream_vector() {
        assert_eq!(
            digest("test_key_12345"),
            "sha256$45af89b510a3279a817f851de5d3f95b73485d58ec2672a39e52d8aeeb014059"
        );
    }

    #[test]
    fn generated_keys_have_fixed_shape() {
        let k = generate();
        assert_eq!(k.len(), 47);
        assert!(k.starts_with("phx_"));
        assert!(k[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(mask(&k), format!("phx_...{}", &k[43..]));
    }

    #[test]
    fn write_implies_read_and_empty_grants_nothing() {
        let w = vec!["user:write".to_owned()];
        assert!(grants(&w, "user:read"));
        assert!(!grants(&["user:read".to_owned()], "user:write"));
        assert!(!grants(&[], "user:read"));
        assert!(grants(&["*".to_owned()], "user:write"));
    }
}
