//! Pseudonym formats and strategies (the original GDPR service's shapes):
//!
//! * `hash`: `pseudo-` + 64 hex of HMAC-SHA256(k_pseudonym_hmac, original). One-way.
//! * `token`: `pseudo-` + 32 hex of 16 random bytes; the mapping row finds it again.
//! * `encryption`: `pseudo-enc-` + base64url (no padding) of
//!   `0x01 | len(key_id) | key_id | nonce(12) | AES-256-GCM(ciphertext || tag)`, where
//!   nonce = first 12 bytes of HMAC-SHA256(k_synthetic_nonce, original) (deterministic:
//!   the same original gives the same pseudonym under one key) and the associated data
//!   is `audit_db pseudonym v1 <key_id>`. Reversible with the key alone.
//!
//! Mapping rows store `original_id` as `v1:<key_id>:<base64url(nonce(12 random) ||
//! ciphertext || tag)>` (AES-256-GCM, associated data `audit_db mapping v1 <key_id>`),
//! and a keyed blind index `hex(HMAC-SHA256(k_blind_index, original))` to find an
//! existing mapping without decrypting.

use crate::crypto::{gcm_open_with, gcm_seal_with, CryptoError, KeyRing, Purpose, RootKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

pub const PREFIX: &str = "pseudo-";
pub const ENC_PREFIX: &str = "pseudo-enc-";

/// Whether a value is a reference already, decided by its whole shape and never by its
/// first letters (issue 26: `security.officer@corp.com`, `systemadmin@corp.com` and
/// `pseudonym.lover@x` are people): a hash pseudonym (`pseudo-` + 64 lowercase hex,
/// an HMAC-SHA256: indistinguishable from random bits, so no identifier names a person
/// with it) or `sha256:` + 64 hex (the reference of a row written without a key).
/// Such a value enters the row hash as itself and is not pseudonymized again by
/// `hash`; `token` and `encryption` also leave values the mapping table knows.
pub fn is_reference(value: &str) -> bool {
    is_reference_bytes(value.as_bytes())
}

/// `is_reference` on the bytes of a value (the fast hash path reads text in place).
pub fn is_reference_bytes(value: &[u8]) -> bool {
    let hex = |h: &[u8], lower: bool| {
        h.len() == 64 && h.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b) || (!lower && (b'A'..=b'F').contains(b)))
    };
    match (value.strip_prefix(PREFIX.as_bytes()), value.strip_prefix(b"sha256:")) {
        (Some(h), _) => hex(h, true),
        (_, Some(h)) => hex(h, false),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Hash,
    Token,
    Encryption,
}

impl Strategy {
    pub fn parse(text: &str) -> Option<Strategy> {
        match text {
            "hash" => Some(Strategy::Hash),
            "token" => Some(Strategy::Token),
            "encryption" => Some(Strategy::Encryption),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Hash => "hash",
            Strategy::Token => "token",
            Strategy::Encryption => "encryption",
        }
    }
}

/// Which strategy made a pseudonym, judged by its shape.
pub fn classify(pseudonym: &str) -> Option<Strategy> {
    if let Some(rest) = pseudonym.strip_prefix(ENC_PREFIX) {
        return (!rest.is_empty()).then_some(Strategy::Encryption);
    }
    let rest = pseudonym.strip_prefix(PREFIX)?;
    let hex = rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match (hex, rest.len()) {
        (true, 64) => Some(Strategy::Hash),
        (true, 32) => Some(Strategy::Token),
        _ => None,
    }
}

pub fn hash_pseudonym(key: &RootKey, original: &str) -> String {
    let mut out = [0u8; HASH_PSEUDONYM_LEN];
    write_hash_pseudonym(key, original.as_bytes(), &mut out);
    String::from_utf8(out.to_vec()).expect("the prefix and hex digits are ASCII")
}

/// Length of a hash pseudonym: `pseudo-` and 64 hex digits.
pub const HASH_PSEUDONYM_LEN: usize = PREFIX.len() + 64;

/// Writes `pseudo-` + hex(HMAC-SHA256(k_pseudonym_hmac, original)) into a caller's
/// buffer (no allocation). The key's HMAC state is prepared once (`RootKey::mac`):
/// each pseudonym costs the compressions of the message and the outer hash.
pub fn write_hash_pseudonym(key: &RootKey, original: &[u8], out: &mut [u8; HASH_PSEUDONYM_LEN]) {
    out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    hex::encode_to_slice(key.mac(Purpose::PseudonymHmac, original), &mut out[PREFIX.len()..])
        .expect("64 bytes hold 32 in hex");
}

pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

pub fn blind_index(key: &RootKey, original: &str) -> String {
    hex::encode(key.mac(Purpose::BlindIndex, original.as_bytes()))
}

fn pseudonym_aad(key_id: &str) -> Vec<u8> {
    format!("audit_db pseudonym v1 {key_id}").into_bytes()
}

fn mapping_aad(key_id: &str) -> Vec<u8> {
    format!("audit_db mapping v1 {key_id}").into_bytes()
}

pub fn encrypt_pseudonym(key: &RootKey, original: &str) -> String {
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&key.mac(Purpose::SyntheticNonce, original.as_bytes())[..12]);
    let sealed = gcm_seal_with(key.cipher(Purpose::PseudonymEncryption), &nonce, original.as_bytes(), &pseudonym_aad(&key.id));
    let mut payload = Vec::with_capacity(2 + key.id.len() + 12 + sealed.len());
    payload.push(1u8);
    payload.push(key.id.len() as u8);
    payload.extend_from_slice(key.id.as_bytes());
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&sealed);
    format!("{ENC_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload))
}

/// The key id an `encryption` pseudonym was made with.
pub fn pseudonym_key_id(pseudonym: &str) -> Result<String, CryptoError> {
    let payload = URL_SAFE_NO_PAD
        .decode(pseudonym.strip_prefix(ENC_PREFIX).ok_or(CryptoError::Malformed)?)
        .map_err(|_| CryptoError::Malformed)?;
    if payload.len() < 2 || payload[0] != 1 {
        return Err(CryptoError::Malformed);
    }
    let n = payload[1] as usize;
    let id = payload.get(2..2 + n).ok_or(CryptoError::Malformed)?;
    String::from_utf8(id.to_vec()).map_err(|_| CryptoError::Malformed)
}

pub fn decrypt_pseudonym(ring: &KeyRing, pseudonym: &str) -> Result<String, CryptoError> {
    let payload = URL_SAFE_NO_PAD
        .decode(pseudonym.strip_prefix(ENC_PREFIX).ok_or(CryptoError::Malformed)?)
        .map_err(|_| CryptoError::Malformed)?;
    let id = pseudonym_key_id(pseudonym)?;
    let rest = &payload[2 + id.len()..];
    if rest.len() < 12 + 16 {
        return Err(CryptoError::Malformed);
    }
    let key = ring.get(&id).ok_or_else(|| CryptoError::UnknownKey(id.clone()))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&rest[..12]);
    let plain = gcm_open_with(key.cipher(Purpose::PseudonymEncryption), &nonce, &rest[12..], &pseudonym_aad(&id))?;
    String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
}

/// `original_id` of a mapping row: random nonce, key id in clear.
pub fn seal_original(key: &RootKey, original: &str) -> String {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = gcm_seal_with(key.cipher(Purpose::MappingEncryption), &nonce, original.as_bytes(), &mapping_aad(&key.id));
    let mut body = nonce.to_vec();
    body.extend_from_slice(&sealed);
    format!("v1:{}:{}", key.id, URL_SAFE_NO_PAD.encode(body))
}

/// The key id of a sealed `original_id`.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    let rest = sealed.strip_prefix("v1:")?;
    rest.split_once(':').map(|(id, _)| id)
}

pub fn open_original(ring: &KeyRing, sealed: &str) -> Result<String, CryptoError> {
    let id = sealed_key_id(sealed).ok_or(CryptoError::Malformed)?;
    let body_b64 = &sealed[3 + id.len() + 1..];
    let body = URL_SAFE_NO_PAD.decode(body_b64).map_err(|_| CryptoError::Malformed)?;
    if body.len() < 12 + 16 {
        return Err(CryptoError::Malformed);
    }
    let key = ring.get(id).ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&body[..12]);
    let plain = gcm_open_with(key.cipher(Purpose::MappingEncryption), &nonce, &body[12..], &mapping_aad(id))?;
    String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hmac_sha256;

    fn ring() -> KeyRing {
        KeyRing::parse(&format!("old {}\nnew {}\n", "11".repeat(32), "22".repeat(32))).unwrap()
    }

    #[test]
    fn hash_is_deterministic_keyed_and_shaped() {
        let r = ring();
        let a = hash_pseudonym(r.current(), "alice@example.com");
        assert_eq!(a, hash_pseudonym(r.current(), "alice@example.com"));
        assert_ne!(a, hash_pseudonym(r.get("old").unwrap(), "alice@example.com"));
        assert_ne!(a, hash_pseudonym(r.current(), "bob@example.com"));
        assert_eq!(a.len(), 7 + 64);
        assert_eq!(classify(&a), Some(Strategy::Hash));
        // Pinned: a change of derivation or format breaks existing pseudonyms.
        assert_eq!(
            hash_pseudonym(&RootKey::new("k", [0u8; 32]), "user-1"),
            hash_pseudonym(&RootKey::new("other-id", [0u8; 32]), "user-1"),
            "the key id does not enter the hash"
        );
    }

    proptest::proptest! {
        /// The prepared state gives the one-shot HMAC's answer, however often it is reused.
        #[test]
        fn prepared_hash_state_equals_one_shot_hmac(inputs in proptest::collection::vec(".*", 1..8)) {
            let key = RootKey::new("k", [7u8; 32]);
            for original in &inputs {
                let mut out = [0u8; HASH_PSEUDONYM_LEN];
                write_hash_pseudonym(&key, original.as_bytes(), &mut out);
                let expected = format!(
                    "{PREFIX}{}",
                    hex::encode(hmac_sha256(key.derive(Purpose::PseudonymHmac).as_ref(), original.as_bytes()))
                );
                proptest::prop_assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
            }
        }
    }

    #[test]
    fn tokens_are_random_and_shaped() {
        let t = new_token();
        assert_eq!(t.len(), 7 + 32);
        assert_ne!(t, new_token());
        assert_eq!(classify(&t), Some(Strategy::Token));
    }

    #[test]
    fn encryption_round_trips_and_is_deterministic() {
        let r = ring();
        for original in ["user-1", "", "Zoë 😀 Ünïcødé", &"x".repeat(10_000)] {
            let p = encrypt_pseudonym(r.current(), original);
            assert!(p.starts_with(ENC_PREFIX));
            assert_eq!(classify(&p), Some(Strategy::Encryption));
            assert_eq!(p, encrypt_pseudonym(r.current(), original));
            assert_eq!(decrypt_pseudonym(&r, &p).unwrap(), original);
            assert_eq!(pseudonym_key_id(&p).unwrap(), "new");
        }
        // Made with the old key: still opens while the ring holds it.
        let old = encrypt_pseudonym(r.get("old").unwrap(), "user-1");
        assert_eq!(decrypt_pseudonym(&r, &old).unwrap(), "user-1");
        let only_new = KeyRing::parse(&format!("new {}", "22".repeat(32))).unwrap();
        assert_eq!(decrypt_pseudonym(&only_new, &old), Err(CryptoError::UnknownKey("old".into())));
    }

    #[test]
    fn tampering_is_detected() {
        let r = ring();
        let p = encrypt_pseudonym(r.current(), "user-1");
        let mut payload = URL_SAFE_NO_PAD.decode(&p[ENC_PREFIX.len()..]).unwrap();
        let last = payload.len() - 1;
        payload[last] ^= 0x01;
        let forged = format!("{ENC_PREFIX}{}", URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(decrypt_pseudonym(&r, &forged), Err(CryptoError::Authentication));
        assert_eq!(decrypt_pseudonym(&r, "pseudo-enc-!!"), Err(CryptoError::Malformed));
        // The same bytes under another key id fail too.
        let other = KeyRing::parse(&format!("new {}", "33".repeat(32))).unwrap();
        assert_eq!(decrypt_pseudonym(&other, &p), Err(CryptoError::Authentication));
    }

    #[test]
    fn sealed_originals_are_randomized_and_open() {
        let r = ring();
        let a = seal_original(r.current(), "alice");
        let b = seal_original(r.current(), "alice");
        assert_ne!(a, b, "random nonce");
        assert!(!a.contains("alice"));
        assert_eq!(sealed_key_id(&a), Some("new"));
        assert_eq!(open_original(&r, &a).unwrap(), "alice");
        let mut bytes = a.into_bytes();
        let n = bytes.len();
        bytes[n - 2] = if bytes[n - 2] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(matches!(open_original(&r, &flipped), Err(CryptoError::Authentication) | Err(CryptoError::Malformed)));
    }

    #[test]
    fn references_by_shape_not_prefix() {
        let key = RootKey::new("k", [7u8; 32]);
        assert!(is_reference(&hash_pseudonym(&key, "user-1")));
        assert!(is_reference(&format!("sha256:{}", "aB".repeat(32))));
        for v in ["pseudo-abc", "pseudonymized", "system", "systemadmin@corp.com", "security.officer@corp.com",
                  "integrity-check", &format!("pseudo-{}", "A".repeat(64)), &format!("pseudo-{}", "a".repeat(63)),
                  &new_token(), &encrypt_pseudonym(&key, "x"), "user-1"] {
            assert!(!is_reference(v), "{v}");
        }
        assert_eq!(classify("pseudo-xyz"), None);
        assert_eq!(classify("user-1"), None);
        assert_eq!(Strategy::parse("token"), Some(Strategy::Token));
        assert_eq!(Strategy::parse("rot13"), None);
    }

    #[test]
    fn blind_index_is_keyed() {
        let r = ring();
        assert_eq!(blind_index(r.current(), "a"), blind_index(r.current(), "a"));
        assert_ne!(blind_index(r.current(), "a"), blind_index(r.get("old").unwrap(), "a"));
        assert_ne!(blind_index(r.current(), "a"), hex::encode(hmac_sha256(&[0x22; 32], b"a")));
    }
}
