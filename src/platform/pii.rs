//! Protection of identifiers at rest. Resident ID numbers, phone numbers and insurance numbers
//! are stored twice, neither in clear: encrypted with AES-256-GCM (random nonce, so equal values
//! encrypt differently) for display, and as a keyed HMAC-SHA256 for exact lookup. A database dump
//! without the key reveals neither the values nor, for the HMACs, a dictionary attack's answer.
//!
//! The key is `CLOUDHIS_PII_KEY`, or is derived from `CLOUDHIS_SECRET` when that is unset.
//! Ciphertexts carry a version prefix (`v1:`) so the key can be rotated later.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct PiiCipher {
    cipher: Aes256Gcm,
    mac_key: [u8; 32],
}

impl std::fmt::Debug for PiiCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiCipher(..)")
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl PiiCipher {
    pub fn new(master: &[u8]) -> Self {
        let enc = derive(master, "cloudhis/pii/encryption/v1");
        Self {
            cipher: Aes256Gcm::new_from_slice(&enc).expect("32-byte key"),
            mac_key: derive(master, "cloudhis/pii/index/v1"),
        }
    }

    pub fn encrypt(&self, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self.cipher.encrypt(&Nonce::from(nonce), plain.as_bytes()).expect("AES-GCM encrypts");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(blob))
    }

    /// `None` when the text is not ours or was tampered with.
    pub fn decrypt(&self, stored: &str) -> Option<String> {
        let blob = B64.decode(stored.strip_prefix("v1:")?).ok()?;
        if blob.len() < 12 {
            return None;
        }
        let (nonce, ct) = blob.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), ct).ok()?;
        String::from_utf8(plain).ok()
    }

    /// A keyed hash for exact lookup. `domain` separates kinds of value (`rid`, `phone`, …), so the
    /// same digits in two kinds do not collide.
    pub fn index(&self, domain: &str, value: &str) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.mac_key).expect("HMAC key");
        mac.update(domain.as_bytes());
        mac.update(b"\x1f");
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..20])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_randomised_and_tamper_evident() {
        let c = PiiCipher::new(b"k");
        let a = c.encrypt("13800138000");
        let b = c.encrypt("13800138000");
        assert_ne!(a, b, "random nonces");
        assert!(!a.contains("13800138000"));
        assert_eq!(c.decrypt(&a).as_deref(), Some("13800138000"));
        let mut bad = a.clone();
        bad.replace_range(10..11, if &a[10..11] == "A" { "B" } else { "A" });
        assert_eq!(c.decrypt(&bad), None);
        assert_eq!(PiiCipher::new(b"other").decrypt(&a), None);
    }

    #[test]
    fn index_is_keyed_and_domain_separated() {
        let c = PiiCipher::new(b"k");
        assert_eq!(c.index("phone", "138"), c.index("phone", "138"));
        assert_ne!(c.index("phone", "138"), c.index("rid", "138"));
        assert_ne!(c.index("phone", "138"), PiiCipher::new(b"k2").index("phone", "138"));
    }
}
