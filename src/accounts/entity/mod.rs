pub mod journal_entry;
pub mod journal_line;
pub mod ledger_account;
pub mod ledger_period;
