pub mod enrollment;
pub mod enrollment_suggestion;
pub mod followup_visit;
