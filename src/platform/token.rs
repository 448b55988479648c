//! Session tokens: HS256 JWTs signed with `CLOUDHIS_SECRET`. A token names the tenant, user and
//! the institution the session acts in; revocation (logout) is a flag in the cache keyed by the
//! token id, kept until the token would have expired anyway.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::platform::{AppError, AppResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// user id
    pub sub: Uuid,
    /// tenant id
    pub tid: Uuid,
    /// institution the session acts in
    pub ins: Uuid,
    /// token id, the revocation key
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub aud: String,
}

const AUDIENCE: &str = "cloudhis";

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    pub fn issue(
        &self,
        tenant: Uuid,
        user: Uuid,
        institution: Uuid,
        ttl: std::time::Duration,
    ) -> AppResult<(String, Claims)> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            tid: tenant,
            ins: institution,
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            aud: AUDIENCE.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)?;
        Ok((token, claims))
    }

    /// Checks signature, audience and expiry. Any failure is the same 401.
    pub fn verify(&self, token: &str) -> AppResult<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        decode::<Claims>(token, &self.decoding, &validation).map(|d| d.claims).map_err(|_| AppError::Unauthenticated)
    }
}

pub fn expires_at(claims: &Claims) -> DateTime<Utc> {
    DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trip_and_tamper() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let (t, c) = keys.issue(Uuid::nil(), Uuid::nil(), Uuid::nil(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys.verify(&t).unwrap().jti, c.jti);
        let other = TokenKeys::new(b"fedcba9876543210fedcba9876543210");
        assert!(other.verify(&t).is_err());
        assert!(keys.verify(&format!("{t}x")).is_err());
    }
}
