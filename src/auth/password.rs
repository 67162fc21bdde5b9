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

/// Checks `password` against a stored argon2 PHC string. Unusable or unknown formats never match.
pub fn verify(password: &str, stored: &str) -> Verified {
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

/// True when the stored value can ever match a password.
pub fn is_usable(stored: &str) -> bool {
    !stored.is_empty() && !stored.starts_with('!')
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

    #[test]
    fn weaker_parameters_ask_for_rehash() {
        let params = Params::new(4096, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let h = weak.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(verify("pw", &h), Verified::YesRehash);
    }
}
