//! The application role. On PostgreSQL the app runs as `cloudhis_app` (via SET ROLE or its own
//! login), a role that row-level security applies to. Migrations run as the schema owner.

use crate::rls::APP_ROLE;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // Roles are cluster-wide. Create it when we may; in production a DBA or CloudNativePG's
        // managed roles create it with a password, and this block only grants.
        let sql = format!(
            "DO $$
             BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                 BEGIN
                   CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                 EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN
                   RAISE NOTICE 'could not create role {APP_ROLE}; create it before migrating';
                 END;
               END IF;
             END $$;
             GRANT USAGE ON SCHEMA public TO {APP_ROLE};
             DO $$
             BEGIN
               EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
             EXCEPTION WHEN OTHERS THEN
               RAISE NOTICE 'the migrating user cannot be made a member of {APP_ROLE}';
             END $$;"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The role is cluster-wide and may serve other databases: never dropped here.
        Ok(())
    }
}
