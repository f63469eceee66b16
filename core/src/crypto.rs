//! Keys and primitives for pseudonymization and for signing rows and blocks, from audited crates
//! only: HMAC-SHA256 (`hmac`, `sha2`), HKDF-SHA256 (`hkdf`), AES-256-GCM (`aes-gcm`).
//!
//! The root key file holds lines `<key_id> <64 hex chars>`; the last line is the
//! current key, earlier ones stay for decryption and rotation. Per-purpose keys are
//! derived with HKDF-SHA256 (no salt, info = `audit_db/v1/<label>`), so one root key
//! never serves two purposes. Secret bytes live in `Zeroizing` buffers and never appear
//! in `Debug` output or error messages.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// Why a key file (or key command output) was refused. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No key line at all.
    Empty,
    /// Line `n` (1-based) is not `<key_id> <64 hex chars>`.
    Malformed { line: usize },
    /// Line `n` repeats a key id of an earlier line.
    DuplicateId { line: usize },
    /// Group or others may access the file (octal mode given).
    Permissions { mode: u32 },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "the key file holds no key line"),
            KeyError::Malformed { line } => {
                write!(f, "line {line} of the key file is not \"<key_id> <64 hex characters>\"")
            }
            KeyError::DuplicateId { line } => write!(f, "line {line} of the key file repeats a key id"),
            KeyError::Permissions { mode } => write!(
                f,
                "the key file is accessible by group or others (mode {mode:04o}); it must be readable by its owner only"
            ),
        }
    }
}

/// Why a ciphertext could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Not in the expected format.
    Malformed,
    /// Made with a key id the key ring does not have.
    UnknownKey(String),
    /// Authentication failed: tampered data or the wrong key.
    Authentication,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Malformed => write!(f, "malformed ciphertext"),
            CryptoError::UnknownKey(id) => write!(f, "made with key \"{id}\", which the key file does not hold"),
            CryptoError::Authentication => {
                write!(f, "ciphertext failed authentication (tampered, or not made with this key)")
            }
        }
    }
}

/// Refuses a key file that group or others can access, as PostgreSQL does for its
/// SSL private key.
pub fn check_key_file_mode(mode: u32) -> Result<(), KeyError> {
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { mode: mode & 0o7777 });
    }
    Ok(())
}

/// What a derived key is for; each has its own HKDF label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `hash` pseudonyms (HMAC-SHA256).
    PseudonymHmac,
    /// The keyed blind index that finds an existing mapping without decrypting.
    BlindIndex,
    /// `original_id` of mapping rows (AES-256-GCM, random nonce).
    MappingEncryption,
    /// `encryption` pseudonyms (AES-256-GCM).
    PseudonymEncryption,
    /// The synthetic nonce of `encryption` pseudonyms (HMAC-SHA256 of the input).
    SyntheticNonce,
    /// Signatures of audit events.
    IntegritySigning,
}

impl Purpose {
    fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Purpose::PseudonymHmac => "pseudonym-hmac",
            Purpose::BlindIndex => "blind-index",
            Purpose::MappingEncryption => "mapping-encryption",
            Purpose::PseudonymEncryption => "pseudonym-encryption",
            Purpose::SyntheticNonce => "synthetic-nonce",
            Purpose::IntegritySigning => "integrity-signing",
        }
    }
}

const PURPOSES: usize = 6;

/// One root key: an id and 32 secret bytes, and its derived keys once computed (a
/// key ring lives for a backend, so each HKDF expansion runs once per purpose). The
/// keyed HMAC states and AES key schedules made from them are kept too: an HMAC then
/// costs two SHA-256 compressions of the message instead of four, and an AES-GCM
/// operation no key expansion. (Those states are key material as much as the derived
/// keys; they live exactly as long as the ring, in backend memory.)
pub struct RootKey {
    pub id: String,
    secret: Zeroizing<[u8; 32]>,
    derived: [std::cell::OnceCell<Zeroizing<[u8; 32]>>; PURPOSES],
    macs: [std::cell::OnceCell<Hmac<Sha256>>; PURPOSES],
    ciphers: [std::cell::OnceCell<Aes256Gcm>; PURPOSES],
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey {{ id: {:?}, secret: <redacted> }}", self.id)
    }
}

impl RootKey {
    pub fn new(id: &str, secret: [u8; 32]) -> RootKey {
        RootKey::from_secret(id, Zeroizing::new(secret))
    }

    fn from_secret(id: &str, secret: Zeroizing<[u8; 32]>) -> RootKey {
        RootKey {
            id: id.to_string(),
            secret,
            derived: Default::default(),
            macs: Default::default(),
            ciphers: Default::default(),
        }
    }

    /// The keyed HMAC-SHA256 state of a purpose, prepared once: clone it per message.
    pub fn prepared_mac(&self, purpose: Purpose) -> &Hmac<Sha256> {
        self.macs[purpose.index()].get_or_init(|| {
            <Hmac<Sha256> as Mac>::new_from_slice(self.derive(purpose).as_ref()).expect("HMAC takes keys of any length")
        })
    }

    /// HMAC-SHA256 of `data` under the purpose's key (equal to
    /// `hmac_sha256(&derive(purpose), data)`).
    pub fn mac(&self, purpose: Purpose, data: &[u8]) -> [u8; 32] {
        let mut mac = self.prepared_mac(purpose).clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// AES-256-GCM under the purpose's key, its key schedule made once.
    pub fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        self.ciphers[purpose.index()]
            .get_or_init(|| Aes256Gcm::new_from_slice(self.derive(purpose).as_ref()).expect("32-byte key"))
    }

    /// The per-purpose key: HKDF-SHA256(ikm = root, salt = none, info = "audit_db/v1/<label>").
    pub fn derive(&self, purpose: Purpose) -> Zeroizing<[u8; 32]> {
        self.derived[purpose.index()]
            .get_or_init(|| {
                let hk = Hkdf::<Sha256>::new(None, self.secret.as_ref());
                let mut out = Zeroizing::new([0u8; 32]);
                let info = format!("audit_db/v1/{}", purpose.label());
                hk.expand(info.as_bytes(), out.as_mut()).expect("32 bytes is a valid HKDF-SHA256 length");
                out
            })
            .clone()
    }
}

/// The keys of a key file, oldest first; the last is current.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RootKey>,
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl KeyRing {
    /// Parses `<key_id> <64 hex>` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let mut keys: Vec<RootKey> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(hexkey), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(KeyError::Malformed { line: i + 1 });
            };
            if !valid_key_id(id) || hexkey.len() != 64 {
                return Err(KeyError::Malformed { line: i + 1 });
            }
            let mut secret = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hexkey, secret.as_mut()).map_err(|_| KeyError::Malformed { line: i + 1 })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId { line: i + 1 });
            }
            keys.push(RootKey::from_secret(id, secret));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeyRing { keys })
    }

    pub fn current(&self) -> &RootKey {
        self.keys.last().expect("a parsed key ring is never empty")
    }

    pub fn get(&self, id: &str) -> Option<&RootKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn keys(&self) -> &[RootKey] {
        &self.keys
    }
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// AES-256-GCM encryption; returns ciphertext || 16-byte tag.
pub fn gcm_seal(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    gcm_seal_with(&Aes256Gcm::new_from_slice(key).expect("32-byte key"), nonce, plaintext, aad)
}

/// `gcm_seal` with a prepared cipher (`RootKey::cipher`).
pub fn gcm_seal_with(cipher: &Aes256Gcm, nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail")
}

/// AES-256-GCM decryption of ciphertext || tag.
pub fn gcm_open(key: &[u8; 32], nonce: &[u8; 12], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    gcm_open_with(&Aes256Gcm::new_from_slice(key).expect("32-byte key"), nonce, sealed, aad)
}

/// `gcm_open` with a prepared cipher (`RootKey::cipher`).
pub fn gcm_open_with(cipher: &Aes256Gcm, nonce: &[u8; 12], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test cases 1 and 2.
    #[test]
    fn hmac_sha256_rfc4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    // RFC 5869, test case 1 (the crate, checked against the published vector).
    #[test]
    fn hkdf_sha256_rfc5869() {
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let hk = Hkdf::<Sha256>::new(Some(&salt), &[0x0b; 22]);
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    // The GCM specification (McGrew & Viega), test cases 13 and 14 (AES-256).
    #[test]
    fn aes256_gcm_nist_vectors() {
        let key = [0u8; 32];
        let nonce = [0u8; 12];
        assert_eq!(hex::encode(gcm_seal(&key, &nonce, b"", b"")), "530f8afbc74536b9a963b4f1c4cb738b");
        let sealed = gcm_seal(&key, &nonce, &[0u8; 16], b"");
        assert_eq!(
            hex::encode(&sealed),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
        assert_eq!(gcm_open(&key, &nonce, &sealed, b"").unwrap(), vec![0u8; 16]);
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(gcm_open(&key, &nonce, &flipped, b""), Err(CryptoError::Authentication));
        assert_eq!(gcm_open(&key, &nonce, &sealed, b"other aad"), Err(CryptoError::Authentication));
    }

    #[test]
    fn key_file_parsing() {
        let ring = KeyRing::parse(&format!(
            "# audit_db keys\n\nk1 {}\nk2   {}\n",
            "00".repeat(32),
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(ring.current().id, "k2");
        assert!(ring.get("k1").is_some());
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(KeyRing::parse("k1 abc").unwrap_err(), KeyError::Malformed { line: 1 });
        assert_eq!(
            KeyRing::parse(&format!("k1 {}\nk1 {}", "00".repeat(32), "11".repeat(32))).unwrap_err(),
            KeyError::DuplicateId { line: 2 }
        );
        assert_eq!(
            KeyRing::parse(&format!("k1 {}", "zz".repeat(32))).unwrap_err(),
            KeyError::Malformed { line: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("bad/id {}", "00".repeat(32))).unwrap_err(),
            KeyError::Malformed { line: 1 }
        );
        // Errors and Debug output never show key bytes.
        let secret_hex = "ab".repeat(32);
        assert!(!format!("{ring:?}").contains(&secret_hex));
        let err = KeyRing::parse(&format!("k1 {secret_hex} extra")).unwrap_err();
        assert!(!err.to_string().contains(&secret_hex));
    }

    #[test]
    fn key_file_modes() {
        assert!(check_key_file_mode(0o100600).is_ok());
        assert!(check_key_file_mode(0o100400).is_ok());
        assert_eq!(check_key_file_mode(0o100640), Err(KeyError::Permissions { mode: 0o640 }));
        assert_eq!(check_key_file_mode(0o100604), Err(KeyError::Permissions { mode: 0o604 }));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_root() {
        let a = RootKey::new("a", [1; 32]);
        let b = RootKey::new("b", [2; 32]);
        assert_ne!(*a.derive(Purpose::PseudonymHmac), *a.derive(Purpose::BlindIndex));
        assert_ne!(*a.derive(Purpose::PseudonymHmac), *b.derive(Purpose::PseudonymHmac));
        assert_eq!(*a.derive(Purpose::MappingEncryption), *a.derive(Purpose::MappingEncryption));
        // The prepared states answer as the one-shot primitives do.
        for purpose in [Purpose::PseudonymHmac, Purpose::BlindIndex, Purpose::IntegritySigning] {
            for msg in [&b""[..], b"alice", &[0xffu8; 200][..]] {
                assert_eq!(a.mac(purpose, msg), hmac_sha256(a.derive(purpose).as_ref(), msg));
            }
        }
        let nonce = [3u8; 12];
        let sealed = gcm_seal(&a.derive(Purpose::MappingEncryption), &nonce, b"bob", b"aad");
        assert_eq!(gcm_seal_with(a.cipher(Purpose::MappingEncryption), &nonce, b"bob", b"aad"), sealed);
        assert_eq!(gcm_open_with(a.cipher(Purpose::MappingEncryption), &nonce, &sealed, b"aad").unwrap(), b"bob");
    }
}
