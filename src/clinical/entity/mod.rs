pub mod addendum;
pub mod allergy;
pub mod break_glass;
pub mod diagnosis;
pub mod encounter;
pub mod vital_sign;
