//! Escalation: a chronic-disease follow-up that flags the patient (a danger value, the second
//! uncontrolled follow-up in a row, a complication) drafts an up-referral in the same
//! transaction. A workflow above `followups` and `referrals`, so that neither writes the other.

pub mod api;
pub mod service;
