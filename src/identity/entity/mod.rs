pub mod role_binding;
pub mod user;
