//! Customer ids outside the scoring path: pseudonyms, never the ids themselves.
//!
//! Scored outputs (the API answer, `scored/…` files) carry the real id because the retention
//! team needs it. Everywhere else an id would leave the scoring path — logs, reports, notebook
//! output, `churn explain` — it is replaced by a pseudonym: the first 16 hex digits of
//! HMAC-SHA256(key, id). A keyed hash, because a plain hash of an id drawn from a small,
//! structured space (Telco ids are `dddd-AAAAA`) can be reversed by trying every id.
//!
//! The key comes from [`KEY_VARIABLE`] (at least 16 bytes; keep it in a secret store). Without
//! it a random key is drawn per process: pseudonyms are then still not reversible, but they do
//! not match across processes or runs (logs of two Lambda instances cannot be joined on them).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::env::ConfigError;

/// Environment variable holding the pseudonym key.
pub const KEY_VARIABLE: &str = "ID_PSEUDONYM_KEY";
/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    /// Whether the key was configured (stable pseudonyms) or drawn at random.
    pub configured: bool,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymizer").field("configured", &self.configured).finish_non_exhaustive()
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with this key.
    pub fn with_key(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < MIN_KEY_BYTES {
            // The value is a secret: it is not echoed.
            return Err(ConfigError::new(
                KEY_VARIABLE,
                "<hidden>",
                &format!("is {} bytes; use at least {MIN_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)", key.len()),
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        Ok(Pseudonymizer { mac, configured: true })
    }

    /// A pseudonymizer with a random key (pseudonyms valid within this process only).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        // The OS random source only fails on broken systems; the fallback still differs per
        // process and is never logged.
        if getrandom::fill(&mut key).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            key[..16].copy_from_slice(&t.to_le_bytes());
            key[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        }
        Pseudonymizer { configured: false, ..Self::with_key(&key).expect("32 bytes") }
    }

    /// From [`KEY_VARIABLE`] in `vars`, or a random key when it is unset or empty.
    pub fn from_vars(vars: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match vars(KEY_VARIABLE).filter(|k| !k.is_empty()) {
            Some(k) => Self::with_key(k.as_bytes()),
            None => Ok(Self::random()),
        }
    }

    /// From the process environment (see [`Pseudonymizer::from_vars`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&|k| std::env::var(k).ok())
    }

    /// The pseudonym of a customer id.
    pub fn pseudonym(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_depend_on_the_key_and_hide_the_id() {
        let a = Pseudonymizer::with_key(b"0123456789abcdef").unwrap();
        let b = Pseudonymizer::with_key(b"0123456789abcdeX").unwrap();
        let p = a.pseudonym("7590-VHVEG");
        assert_eq!(p.len(), 16);
        assert!(!p.contains("7590"));
        assert_eq!(p, a.pseudonym("7590-VHVEG"));
        assert_ne!(p, b.pseudonym("7590-VHVEG"));
        assert_ne!(p, a.pseudonym("7590-VHVEH"));
        // RFC 4231 test case 2 (key "Jefe"), checked through the same code path with a long key.
        let jefe = Pseudonymizer { configured: true, mac: <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap() };
        assert_eq!(jefe.pseudonym("what do ya want for nothing?"), "5bdcc146bf60754e");
    }

    #[test]
    fn a_short_key_is_refused_by_name_and_no_key_means_random() {
        let err = Pseudonymizer::from_vars(&|_| Some("short".into())).unwrap_err();
        assert!(err.to_string().contains(KEY_VARIABLE), "{err}");
        let r1 = Pseudonymizer::from_vars(&|_| None).unwrap();
        let r2 = Pseudonymizer::random();
        assert!(!r1.configured);
        assert_ne!(r1.pseudonym("x"), r2.pseudonym("x"));
    }
}
