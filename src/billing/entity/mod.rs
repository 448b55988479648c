pub mod bill;
pub mod charge;
pub mod fee_item;
pub mod payment;
pub mod refund;
