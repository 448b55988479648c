pub mod stat_daily;
pub mod stat_enrollment;
pub mod stat_followup;
pub mod stat_referral;
pub mod stat_registry;
