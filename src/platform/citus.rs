//! Scale-out on Citus (issue 24). On a coordinator with the `citus` extension, `cloudhis migrate`
//! (and the migration on start) follows the ordinary migrations with a distribution step:
//!
//! - `tenants` becomes a reference table (a copy on every node); the foreign keys that point at
//!   it are dropped (see `distribute` for why; the tenant apply writes a tenant and its
//!   institutions in one transaction, and every query is scoped by the tenant);
//! - every table of `public` with a `tenant_id` column is distributed by `tenant_id`, all in one
//!   co-location group, so that one community's rows of every table live on one node and a
//!   tenant-scoped query routes to it; tables are taken in an order their foreign keys allow;
//! - row-level security is kept: a table's policies are set aside while it is distributed and
//!   made again, with the `(SELECT current_setting(..))` sub-selects (which Citus refuses in
//!   policies) written as plain expressions; grants travel with the table;
//! - the database is set to propagate `SET LOCAL` to the workers
//!   (`citus.propagate_set_commands = 'local'`), which is how the request's tenant reaches the
//!   shards' policies (`platform::db` sets it with `SET LOCAL`), and to allow the triggers that
//!   keep the ledger append-only (`citus.enable_unsafe_triggers`).
//!
//! It is idempotent: a distributed table is left alone, and a tenant table added by a later
//! migration is distributed by the next run.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

/// What a distribution run did.
#[derive(Debug, Default)]
pub struct Distributed {
    /// Tables made reference tables by this run.
    pub reference: Vec<String>,
    /// Tables distributed by `tenant_id` by this run.
    pub distributed: Vec<String>,
    /// Tables that were distributed already.
    pub already: usize,
}

/// Whether this database is a Citus coordinator (the extension is installed).
pub async fn present(conn: &DatabaseConnection) -> anyhow::Result<bool> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(false);
    }
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS present",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<bool>("", "present")).transpose()?.unwrap_or(false))
}

async fn strings(conn: &impl ConnectionTrait, sql: &str) -> anyhow::Result<Vec<String>> {
    let rows = conn.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "s").map_err(Into::into)).collect()
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A policy expression without sub-selects: `( SELECT expr AS alias)` becomes `(expr)`.
pub fn without_subselects(expr: &str) -> String {
    const OPEN: &str = "( SELECT ";
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let inner_start = at + OPEN.len();
        // The parenthesis that closes this sub-select.
        let mut depth = 1;
        let mut end = None;
        for (i, ch) in rest[inner_start..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(inner_start + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = &rest[inner_start..end];
        let inner = inner.rfind(" AS ").map_or(inner, |a| &inner[..a]);
        out.push('(');
        out.push_str(inner);
        out.push(')');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The statements that make a table's policies again, sub-selects written out.
async fn policies_of(tx: &impl ConnectionTrait, table: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let sql = format!(
        "SELECT policyname, permissive, array_to_string(roles, ',') AS roles, cmd, qual, with_check
           FROM pg_policies WHERE schemaname = 'public' AND tablename = {}",
        quote_literal(table)
    );
    let rows = tx.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    let (mut drop, mut create) = (Vec::new(), Vec::new());
    for r in rows {
        let name: String = r.try_get("", "policyname")?;
        let permissive: String = r.try_get("", "permissive")?;
        let roles: String = r.try_get("", "roles")?;
        let cmd: String = r.try_get("", "cmd")?;
        let qual: Option<String> = r.try_get("", "qual")?;
        let check: Option<String> = r.try_get("", "with_check")?;
        drop.push(format!("DROP POLICY {} ON {}", quote_ident(&name), quote_ident(table)));
        let mut sql = format!(
            "CREATE POLICY {} ON {} AS {permissive} FOR {cmd} TO {roles}",
            quote_ident(&name),
            quote_ident(table)
        );
        if let Some(q) = qual {
            sql.push_str(&format!(" USING ({})", without_subselects(&q)));
        }
        if let Some(c) = check {
            sql.push_str(&format!(" WITH CHECK ({})", without_subselects(&c)));
        }
        create.push(sql);
    }
    Ok((drop, create))
}

/// Makes `tenants` a reference table, after dropping the foreign keys that point at it (see
/// `distribute`).
async fn reference_tenants(conn: &DatabaseConnection, report: &mut Distributed) -> anyhow::Result<()> {
    let done = strings(
        conn,
        "SELECT logicalrelid::text AS s FROM pg_dist_partition WHERE logicalrelid = 'public.tenants'::regclass",
    )
    .await?;
    if !done.is_empty() {
        report.already += 1;
        return Ok(());
    }
    let tx = conn.begin().await?;
    let fks = tx
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT conrelid::regclass::text AS t, conname FROM pg_constraint
              WHERE contype = 'f' AND confrelid = 'public.tenants'::regclass",
        ))
        .await?;
    for r in fks {
        let (t, name): (String, String) = (r.try_get("", "t")?, r.try_get("", "conname")?);
        tx.execute_unprepared(&format!("ALTER TABLE {t} DROP CONSTRAINT {}", quote_ident(&name))).await?;
    }
    tx.execute_unprepared("SELECT create_reference_table('public.tenants')").await?;
    tx.commit().await?;
    report.reference.push("tenants".into());
    Ok(())
}

/// Distributes one table by `tenant_id` next to `anchor` (or starts the group), its policies
/// set aside and made again. An error leaves the table as it was.
async fn distribute_table(conn: &DatabaseConnection, table: &str, anchor: Option<&str>) -> anyhow::Result<()> {
    let tx = conn.begin().await?;
    tx.execute_unprepared("SET LOCAL citus.enable_unsafe_triggers = on").await?;
    let (drop, create) = policies_of(&tx, table).await?;
    for s in &drop {
        tx.execute_unprepared(s).await?;
    }
    let with = anchor.map_or("'default'".to_string(), |a| quote_literal(&format!("public.{a}")));
    tx.execute_unprepared(&format!(
        "SELECT create_distributed_table({}, 'tenant_id', colocate_with => {with})",
        quote_literal(&format!("public.{table}"))
    ))
    .await?;
    for s in &create {
        tx.execute_unprepared(s).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The distribution step (see the module's documentation).
pub async fn distribute(conn: &DatabaseConnection) -> anyhow::Result<Distributed> {
    let mut report = Distributed::default();
    conn.execute_unprepared(
        "DO $$ BEGIN
           EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', current_database(), 'local');
           EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = %L', current_database(), 'on');
         END $$",
    )
    .await?;
    // The foreign keys to `tenants` are dropped, not restored: with them, a new community's first
    // institution was refused on its worker in the transaction that wrote the community (the
    // reference row not yet visible to the shard's check). A tenant id is only ever written by
    // the tenant apply, in the same transaction as the tenant, and every query is scoped by it.
    reference_tenants(conn, &mut report).await?;
    let tenant_tables = "SELECT c.relname::text AS s FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)";
    let all = strings(conn, tenant_tables).await?;
    let done = strings(
        conn,
        "SELECT c.relname::text AS s FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid WHERE d.partmethod = 'h'",
    )
    .await?;
    report.already += all.iter().filter(|t| done.contains(t)).count();
    let mut anchor = done.first().cloned();
    // Institutions first: most foreign keys point at them.
    let mut left: Vec<String> = all.into_iter().filter(|t| !done.contains(t)).collect();
    left.sort_by_key(|t| (t != "institutions", t.clone()));
    // A table whose foreign key names a table not yet distributed waits for the next pass; a
    // pass that distributes nothing ends the run with the last refusal.
    let mut last_error = String::new();
    while !left.is_empty() {
        let before = left.len();
        let mut waiting = Vec::new();
        for t in left {
            match distribute_table(conn, &t, anchor.as_deref()).await {
                Ok(()) => {
                    anchor.get_or_insert_with(|| t.clone());
                    report.distributed.push(t);
                }
                Err(e) => {
                    last_error = format!("{t}: {e}");
                    waiting.push(t);
                }
            }
        }
        if waiting.len() == before {
            anyhow::bail!("tables left undistributed ({}): {last_error}", waiting.join(", "));
        }
        left = waiting;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_sub_selects_are_written_as_expressions() {
        let q = r#"(tenant_id = ( SELECT (NULLIF(current_setting('cloudhis.tenant_id'::text, true), ''::text))::uuid AS "nullif"))"#;
        assert_eq!(
            without_subselects(q),
            r#"(tenant_id = ((NULLIF(current_setting('cloudhis.tenant_id'::text, true), ''::text))::uuid))"#
        );
        let relay = r#"((tenant_id = ( SELECT 1 AS x)) OR (( SELECT current_setting('cloudhis.relay'::text, true) AS current_setting) = 'on'::text))"#;
        assert_eq!(
            without_subselects(relay),
            r#"((tenant_id = (1)) OR ((current_setting('cloudhis.relay'::text, true)) = 'on'::text))"#
        );
        assert_eq!(without_subselects("(a = b)"), "(a = b)");
    }
}
