pub mod drug;
pub mod institution_drug;
pub mod prescription;
pub mod prescription_line;
pub mod stock_batch;
pub mod stock_movement;
pub mod stock_transfer;
