pub mod authz_epoch;
pub mod role_binding;
pub mod user;
pub mod user_totp;
