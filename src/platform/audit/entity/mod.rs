pub mod audit_head;
pub mod audit_log;
