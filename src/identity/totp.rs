//! Time-based one-time passwords (RFC 6238, HMAC-SHA-1, 6 digits, 30-second steps): the optional
//! second login factor for administrators (MLPS 2.0 level 3 asks for two factors where
//! administrators log in). SHA-1 because every authenticator app reads it; RFC 6238's security
//! does not rest on SHA-1's collision resistance.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

/// Seconds per step.
pub const STEP: i64 = 30;
/// Steps either side of now that are accepted (clock drift between server and phone).
pub const DRIFT: i64 = 1;

/// A new random 160-bit secret.
pub fn new_secret() -> [u8; 20] {
    let mut s = [0u8; 20];
    rand::rng().fill_bytes(&mut s);
    s
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret: &[u8]) -> Option<TOTP> {
    // Secrets are 160 bits (new_secret); totp-rs refuses shorter than 128.
    TOTP::new(Algorithm::SHA1, 6, 0, STEP as u64, secret.to_vec()).ok()
}

/// The 6-digit code of `step` (RFC 4226 HOTP with the step as counter), as the phone shows it.
pub fn code_at(secret: &[u8], step: i64) -> String {
    totp(secret).map(|t| t.generate((step * STEP) as u64)).unwrap_or_default()
}

/// The step a code was accepted at, if `code` (6 digits) matches a step within [`DRIFT`] of
/// `now` (seconds since the epoch) and later than `last_used`, so a code works once. Every step
/// of the window is compared, in constant time, whatever matched first.
pub fn verify(secret: &[u8], code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
    // Apps show the code as "123 456"; an input method left in full-width mode types "１２３４５６".
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            c => c,
        })
        .collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now.div_euclid(STEP);
    let mut accepted = None;
    for step in current - DRIFT..=current + DRIFT {
        let matches: bool = code_at(secret, step).as_bytes().ct_eq(code.as_bytes()).into();
        if matches && last_used.is_none_or(|l| step > l) && accepted.is_none() {
            accepted = Some(step);
        }
    }
    accepted
}

/// Characters an `otpauth://` label or parameter keeps as they are (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The `otpauth://` URI an authenticator app scans (as a QR code) or takes by hand.
pub fn uri(secret_b32: &str, issuer: &str, account: &str) -> String {
    let enc = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period={STEP}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the 8-digit values, last 6 digits).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(secret, t / STEP), format!("{:06}", expected % 1_000_000), "t = {t}");
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
        assert_eq!(base32(&new_secret()).len(), 32);
    }

    #[test]
    fn a_code_is_accepted_within_the_drift_once_and_nothing_else_is() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let step = now / STEP;
        let code = |s: i64| code_at(&secret, s);
        assert_eq!(verify(&secret, &code(step), now, None), Some(step));
        assert_eq!(verify(&secret, &code(step - 1), now, None), Some(step - 1));
        assert_eq!(verify(&secret, &code(step + 1), now, None), Some(step + 1));
        assert_eq!(verify(&secret, &code(step - 2), now, None), None, "too old");
        assert_eq!(verify(&secret, &code(step), now, Some(step)), None, "already used");
        assert_eq!(verify(&secret, &code(step + 1), now, Some(step)), Some(step + 1));
        let spaced = format!("{} {}", &code(step)[..3], &code(step)[3..]);
        assert_eq!(verify(&secret, &spaced, now, None), Some(step), "as apps show it");
        let full_width: String = spaced
            .chars()
            .map(|c| if c == ' ' { '\u{3000}' } else { char::from_u32(c as u32 + 0xFEE0).unwrap() })
            .collect();
        assert_eq!(verify(&secret, &full_width, now, None), Some(step), "typed in full width: {full_width}");
        for bad in ["", "12345", "1234567", "12a456", " "] {
            assert_eq!(verify(&secret, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let u = uri("ABC", "cloudhis demo-county", "admin");
        assert_eq!(
            u,
            "otpauth://totp/cloudhis%20demo-county:admin?secret=ABC&issuer=cloudhis%20demo-county&algorithm=SHA1&digits=6&period=30"
        );
    }
}
