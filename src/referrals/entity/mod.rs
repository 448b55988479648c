pub mod access_grant;
pub mod referral;
pub mod referral_notification;
pub mod referral_transition;
