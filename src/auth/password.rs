//! Password hashing: argon2id at OWASP parameters (m = 19456 KiB, t = 2, p = 1), PHC strings.
//! An unusable password is stored as `!` + random characters, as Django does.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(M_COST, T_COST, P_COST, None).map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string. Slow on purpose: call it off the async runtime.
pub fn hash(password: &str) -> Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(Error::internal)?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(Error::internal)?
        .to_string())
}

/// The stored value of a user without a usable password.
pub fn unusable() -> String {
    format!("!{}", super::random_base62(40))
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but stored with weaker parameters: re-hash it.
    YesRehash,
}

/// Checks `password` against a stored hash: an argon2 PHC string, or a Django
/// `pbkdf2_sha256$…` hash of an imported user (always re-hashed). Unusable or unknown formats
/// never match.
pub fn verify(password: &str, stored: &str) -> Verified {
    if let Some(django) = stored.strip_prefix("pbkdf2_sha256$") {
        return if verify_django_pbkdf2(password, django) {
            Verified::YesRehash
        } else {
            Verified::No
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Verified::No;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return Verified::No;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let checker = Argon2::new(algorithm, version, params.clone());
    if checker
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::No;
    }
    let current = algorithm == Algorithm::Argon2id
        && version == Version::V0x13
        && params.m_cost() >= M_COST
        && params.t_cost() >= T_COST
        && params.p_cost() >= P_COST;
    if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    }
}

/// `<iterations>$<salt>$<base64 of PBKDF2-HMAC-SHA256, 32 bytes>`, any iteration count.
fn verify_django_pbkdf2(password: &str, rest: &str) -> bool {
    use base64::Engine;
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(expected) else {
        return false;
    };
    if iterations == 0 || expected.len() != 32 {
        return false;
    }
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut derived,
    );
    derived
        .iter()
        .zip(&expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// True when the stored value can ever match a password.
pub fn is_usable(stored: &str) -> bool {
    !stored.is_empty() && !stored.starts_with('!')
}

/// Hashes `secret` with a given salt. Backup codes of one batch share a salt, so a login can
/// check a submitted code with a single hash and then look the result up (`hash_like`).
pub fn hash_with_salt(secret: &str, salt: &SaltString) -> Result<String> {
    Ok(argon2()?
        .hash_password(secret.as_bytes(), salt)
        .map_err(Error::internal)?
        .to_string())
}

/// Hashes `secret` with the algorithm, parameters and salt of `existing_phc`. For a batch that
/// shares one salt, the result equals the stored hash of whichever code `secret` is, so the
/// caller can find that row by exact match.
pub fn hash_like(secret: &str, existing_phc: &str) -> Result<String> {
    let parsed = PasswordHash::new(existing_phc).map_err(Error::internal)?;
    let params = Params::try_from(&parsed).map_err(Error::internal)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(Error::internal)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(Error::internal)?,
        None => Version::V0x13,
    };
    let salt = parsed
        .salt
        .ok_or_else(|| Error::internal("stored hash has no salt"))?;
    Ok(Argon2::new(algorithm, version, params)
        .hash_password(secret.as_bytes(), salt)
        .map_err(Error::internal)?
        .to_string())
}

/// A fresh random salt for `hash_with_salt`.
pub fn new_salt() -> Result<SaltString> {
    let salt_bytes: [u8; 16] = rand::random();
    SaltString::encode_b64(&salt_bytes).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify("correct horse battery staple", &h), Verified::Yes);
        assert_eq!(verify("wrong", &h), Verified::No);
        assert_eq!(verify("x", &unusable()), Verified::No);
    }

    /// A Django-format hash of "correct horse battery staple" (600000 iterations).
    #[test]
    fn django_pbkdf2_hashes_verify_and_ask_for_rehash() {
        let stored = "pbkdf2_sha256$600000$fzdjsyr6QuOU9xAqC3E3RM$/9DyGor0Wiikt1ttvhKy/+519ZOk4os68G6gSY90Y1M=";
        assert_eq!(
            verify("correct horse battery staple", stored),
            Verified::YesRehash
        );
        assert_eq!(verify("wrong", stored), Verified::No);
        assert_eq!(verify("x", "pbkdf2_sha256$abc$salt$hash"), Verified::No);
    }

    #[test]
    fn weaker_parameters_ask_for_rehash() {
        let params = Params::new(4096, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let h = weak.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(verify("pw", &h), Verified::YesRehash);
    }

    #[test]
    fn hash_like_reproduces_a_batch_hash() {
        let salt = new_salt().unwrap();
        let a = hash_with_salt("abcd2345", &salt).unwrap();
        let b = hash_with_salt("wxyz7654", &salt).unwrap();
        assert_eq!(hash_like("abcd2345", &b).unwrap(), a);
        assert_eq!(hash_like("wxyz7654", &a).unwrap(), b);
        assert_ne!(hash_like("abcd2346", &a).unwrap(), a);
        assert_eq!(verify("abcd2345", &a), Verified::Yes);
    }
}
