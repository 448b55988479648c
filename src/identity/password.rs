//! Password hashing with argon2id. Hashing is CPU-bound, so it runs on the blocking pool.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::platform::{AppError, AppResult};

pub async fn hash(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("argon2: {e}")))
    })
    .await
    .map_err(AppError::internal)?
}

pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok())
        .await
        .unwrap_or(false)
}

/// A hash of nothing in particular. Logins for unknown users verify against it, so a wrong
/// username costs the same time as a wrong password and the response says nothing either way.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default().hash_password(b"cloudhis-no-such-user").map(|h| h.to_string()).expect("argon2 hashes")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("Demo@2026".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Demo@2026".into(), h.clone()).await);
        assert!(!verify("demo@2026".into(), h).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
    }
}
