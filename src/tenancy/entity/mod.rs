pub mod department;
pub mod institution;
pub mod tenant;
