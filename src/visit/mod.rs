//! The outpatient visit as one piece: the work that spans clinical, pharmacy and billing in one
//! transaction. The encounter view (what was recorded, prescribed and billed), the community
//! summary (the clinical record with current medicines), and dispensing, which needs the bill
//! paid. A workflow above those three contexts, so that none of them calls another upwards.

pub mod api;
pub mod service;
