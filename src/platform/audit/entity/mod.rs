pub mod audit_head;
pub mod audit_log;
pub mod audit_seal;
