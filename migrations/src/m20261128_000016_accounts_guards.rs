//! Guards the database keeps over the ledger, whatever the code above it does: a closed period
//! stays closed (its row can be neither reopened nor deleted, so the insert guard of
//! m20261128_000012 cannot be lifted by the application role), and on PostgreSQL every journal
//! entry's lines sum to zero when the transaction commits.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "CREATE FUNCTION ledger_period_kept() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   RAISE EXCEPTION 'period % is closed', OLD.period USING ERRCODE = 'check_violation';
                 END $$;
                 CREATE TRIGGER ledger_periods_closed_kept BEFORE UPDATE OR DELETE ON ledger_periods
                   FOR EACH ROW WHEN (OLD.status = 'closed') EXECUTE FUNCTION ledger_period_kept();
                 CREATE FUNCTION journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
                 DECLARE net bigint;
                 BEGIN
                   SELECT COALESCE(SUM(debit_fen - credit_fen), 0) INTO net FROM journal_lines
                    WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.entry_id;
                   IF net <> 0 THEN
                     RAISE EXCEPTION 'journal entry % does not balance (% fen)', NEW.entry_id, net
                       USING ERRCODE = 'check_violation';
                   END IF;
                   RETURN NULL;
                 END $$;
                 CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT ON journal_lines
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced();"
            }
            DbBackend::Sqlite => {
                "CREATE TRIGGER ledger_periods_closed_kept BEFORE UPDATE ON ledger_periods
                   WHEN OLD.status = 'closed' BEGIN SELECT RAISE(ABORT, 'period is closed'); END;
                 CREATE TRIGGER ledger_periods_closed_not_deleted BEFORE DELETE ON ledger_periods
                   WHEN OLD.status = 'closed' BEGIN SELECT RAISE(ABORT, 'period is closed'); END;"
            }
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "DROP FUNCTION IF EXISTS ledger_period_kept CASCADE; DROP FUNCTION IF EXISTS journal_entry_balanced CASCADE"
            }
            DbBackend::Sqlite => {
                "DROP TRIGGER IF EXISTS ledger_periods_closed_kept; DROP TRIGGER IF EXISTS ledger_periods_closed_not_deleted"
            }
            _ => return Ok(()),
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }
}
