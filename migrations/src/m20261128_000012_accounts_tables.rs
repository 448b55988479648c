//! Accounts: the community's chart of accounts, accounting periods, and the double-entry journal
//! (entries and their lines). The app role may only read and insert journal rows: entries are
//! never changed, corrections are new entries, and a closed period takes no new ones.

use crate::rls::{enable_tenant_rls, grant_app, tenant_table, uuid_col};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LedgerAccounts {
    Table,
    TenantId,
    Code,
    Name,
    NameEn,
    Kind,
    Internal,
    Role,
}

#[derive(DeriveIden)]
enum LedgerPeriods {
    Table,
    TenantId,
    Period,
    Status,
    ClosedAt,
    ClosedBy,
}

#[derive(DeriveIden)]
enum JournalEntries {
    Table,
    TenantId,
    Id,
    InstitutionId,
    Period,
    EventId,
    EventType,
    SourceId,
    PersonId,
    CounterpartyId,
    Description,
    OccurredAt,
    PostedAt,
    LateFromPeriod,
}

#[derive(DeriveIden)]
enum JournalLines {
    Table,
    TenantId,
    Id,
    EntryId,
    InstitutionId,
    Period,
    AccountCode,
    DebitFen,
    CreditFen,
    CounterpartyId,
    PersonId,
    SourceId,
}

fn s(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}
fn s_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().null().to_owned()
}
fn u_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).uuid().null().to_owned()
}
fn ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).timestamp_with_time_zone().not_null().to_owned()
}
fn money(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LedgerAccounts::Table)
                    .col(uuid_col(LedgerAccounts::TenantId))
                    .col(s(LedgerAccounts::Code))
                    .col(s(LedgerAccounts::Name))
                    .col(s_null(LedgerAccounts::NameEn))
                    .col(s(LedgerAccounts::Kind))
                    .col(ColumnDef::new(LedgerAccounts::Internal).boolean().not_null())
                    .col(s_null(LedgerAccounts::Role))
                    .primary_key(Index::create().col(LedgerAccounts::TenantId).col(LedgerAccounts::Code))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "ledger_accounts").await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerPeriods::Table)
                    .col(uuid_col(LedgerPeriods::TenantId))
                    .col(s(LedgerPeriods::Period))
                    .col(s(LedgerPeriods::Status))
                    .col(ColumnDef::new(LedgerPeriods::ClosedAt).timestamp_with_time_zone().null())
                    .col(u_null(LedgerPeriods::ClosedBy))
                    .primary_key(Index::create().col(LedgerPeriods::TenantId).col(LedgerPeriods::Period))
                    .to_owned(),
            )
            .await?;
        tenant_table(manager, "ledger_periods").await?;

        manager
            .create_table(
                Table::create()
                    .table(JournalEntries::Table)
                    .col(uuid_col(JournalEntries::TenantId))
                    .col(uuid_col(JournalEntries::Id))
                    .col(uuid_col(JournalEntries::InstitutionId))
                    .col(s(JournalEntries::Period))
                    .col(uuid_col(JournalEntries::EventId))
                    .col(s(JournalEntries::EventType))
                    .col(u_null(JournalEntries::SourceId))
                    .col(u_null(JournalEntries::PersonId))
                    .col(u_null(JournalEntries::CounterpartyId))
                    .col(s(JournalEntries::Description))
                    .col(ts(JournalEntries::OccurredAt))
                    .col(ts(JournalEntries::PostedAt))
                    .col(s_null(JournalEntries::LateFromPeriod))
                    .primary_key(Index::create().col(JournalEntries::TenantId).col(JournalEntries::Id))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_entries_period", &["tenant_id", "period", "institution_id"][..]),
            ("ix_entries_person", &["tenant_id", "person_id"][..]),
            ("ix_entries_source", &["tenant_id", "source_id"][..]),
        ] {
            let mut i = Index::create();
            i.name(name).table(JournalEntries::Table);
            for c in cols {
                i.col(Alias::new(*c));
            }
            manager.create_index(i.to_owned()).await?;
        }
        // One entry per event and institution: posting twice is refused by the database too.
        manager
            .create_index(
                Index::create()
                    .name("ux_entries_event")
                    .table(JournalEntries::Table)
                    .col(JournalEntries::TenantId)
                    .col(JournalEntries::EventId)
                    .col(JournalEntries::InstitutionId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        grant_app(manager, "journal_entries", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "journal_entries").await?;

        manager
            .create_table(
                Table::create()
                    .table(JournalLines::Table)
                    .col(uuid_col(JournalLines::TenantId))
                    .col(uuid_col(JournalLines::Id))
                    .col(uuid_col(JournalLines::EntryId))
                    .col(uuid_col(JournalLines::InstitutionId))
                    .col(s(JournalLines::Period))
                    .col(s(JournalLines::AccountCode))
                    .col(money(JournalLines::DebitFen))
                    .col(money(JournalLines::CreditFen))
                    .col(u_null(JournalLines::CounterpartyId))
                    .col(u_null(JournalLines::PersonId))
                    .col(u_null(JournalLines::SourceId))
                    .primary_key(Index::create().col(JournalLines::TenantId).col(JournalLines::Id))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_lines_balance", &["tenant_id", "period", "institution_id", "account_code"][..]),
            ("ix_lines_entry", &["tenant_id", "entry_id"][..]),
            ("ix_lines_source", &["tenant_id", "source_id"][..]),
        ] {
            let mut i = Index::create();
            i.name(name).table(JournalLines::Table);
            for c in cols {
                i.col(Alias::new(*c));
            }
            manager.create_index(i.to_owned()).await?;
        }
        grant_app(manager, "journal_lines", "SELECT, INSERT").await?;
        enable_tenant_rls(manager, "journal_lines").await?;

        // A closed period takes no new rows, whatever the code above the database does.
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE FUNCTION journal_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       IF EXISTS (SELECT 1 FROM ledger_periods p WHERE p.tenant_id = NEW.tenant_id
                                  AND p.period = NEW.period AND p.status = 'closed') THEN
                         RAISE EXCEPTION 'period % is closed', NEW.period USING ERRCODE = 'check_violation';
                       END IF;
                       RETURN NEW;
                     END $$;
                     CREATE TRIGGER journal_entries_period_open BEFORE INSERT ON journal_entries
                       FOR EACH ROW EXECUTE FUNCTION journal_period_open();
                     CREATE TRIGGER journal_lines_period_open BEFORE INSERT ON journal_lines
                       FOR EACH ROW EXECUTE FUNCTION journal_period_open();
                     CREATE FUNCTION journal_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       RAISE EXCEPTION 'journal rows are immutable; post a correcting entry';
                     END $$;
                     CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries
                       FOR EACH ROW EXECUTE FUNCTION journal_immutable();
                     CREATE TRIGGER journal_lines_immutable BEFORE UPDATE OR DELETE ON journal_lines
                       FOR EACH ROW EXECUTE FUNCTION journal_immutable();",
                )
                .await?;
        }
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE TRIGGER journal_entries_immutable BEFORE UPDATE ON journal_entries
                       BEGIN SELECT RAISE(ABORT, 'journal entries are immutable'); END;
                     CREATE TRIGGER journal_entries_kept BEFORE DELETE ON journal_entries
                       BEGIN SELECT RAISE(ABORT, 'journal entries are immutable'); END;
                     CREATE TRIGGER journal_lines_immutable BEFORE UPDATE ON journal_lines
                       BEGIN SELECT RAISE(ABORT, 'journal lines are immutable'); END;
                     CREATE TRIGGER journal_lines_kept BEFORE DELETE ON journal_lines
                       BEGIN SELECT RAISE(ABORT, 'journal lines are immutable'); END;
                     CREATE TRIGGER journal_entries_period_open BEFORE INSERT ON journal_entries
                       WHEN EXISTS (SELECT 1 FROM ledger_periods p WHERE p.tenant_id = NEW.tenant_id
                                    AND p.period = NEW.period AND p.status = 'closed')
                       BEGIN SELECT RAISE(ABORT, 'period is closed'); END;
                     CREATE TRIGGER journal_lines_period_open BEFORE INSERT ON journal_lines
                       WHEN EXISTS (SELECT 1 FROM ledger_periods p WHERE p.tenant_id = NEW.tenant_id
                                    AND p.period = NEW.period AND p.status = 'closed')
                       BEGIN SELECT RAISE(ABORT, 'period is closed'); END;",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(
                "DROP FUNCTION IF EXISTS journal_period_open CASCADE; DROP FUNCTION IF EXISTS journal_immutable CASCADE",
            ).await?;
        }
        for t in ["journal_lines", "journal_entries", "ledger_periods", "ledger_accounts"] {
            manager.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
