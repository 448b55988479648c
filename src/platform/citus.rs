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
    audit_heads_invoker(conn).await?;
    Ok(report)
}

/// `url` with its database replaced by `db` (its query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    if query.is_empty() { format!("{base}/{db}") } else { format!("{base}/{db}?{query}") }
}

/// The URLs of a cluster's nodes, the coordinator's (`coordinator`, its `postgres` database)
/// first, then each active worker's, with the same user and query string.
pub async fn node_urls(coordinator: &str) -> anyhow::Result<Vec<String>> {
    let admin = sea_orm::Database::connect(coordinator).await?;
    let rows = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT node_name::text AS h, node_port::int4 AS p FROM citus_get_active_worker_nodes() ORDER BY 2",
        ))
        .await?;
    admin.close().await.ok();
    let start = coordinator.find('@').map_or(coordinator.find("//").map_or(0, |i| i + 2), |i| i + 1);
    let end = start + coordinator[start..].find('/').ok_or_else(|| anyhow::anyhow!("a URL with a database"))?;
    let mut nodes = vec![coordinator.to_string()];
    for r in rows {
        let (h, p): (String, i32) = (r.try_get("", "h")?, r.try_get("", "p")?);
        nodes.push(format!("{}{h}:{p}{}", &coordinator[..start], &coordinator[end..]));
    }
    Ok(nodes)
}

/// Makes database `name` a Citus database of its own on every node: created on the coordinator
/// and each worker (Citus does not propagate `CREATE DATABASE`), the extension in each, the
/// coordinator's host and the workers registered, and `shards` shards per distributed table.
/// Returns its URL on the coordinator; `cloudhis migrate` then distributes the schema.
///
/// Callers in parallel (one per test) take turns: registering the nodes copies the roles to each
/// worker (`worker_create_or_alter_role`), and two such copies at once fail on one of them with
/// "tuple concurrently updated", reported as "failure on connection marked as essential".
pub async fn prepare_database(coordinator: &str, name: &str, shards: u32) -> anyhow::Result<String> {
    anyhow::ensure!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "a plain database name");
    let turn = sea_orm::Database::connect(coordinator).await?;
    let held = turn.begin().await?;
    held.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('cloudhis.citus.prepare_database'))").await?;
    let url = prepare_database_in_turn(coordinator, name, shards).await;
    held.commit().await.ok();
    turn.close().await.ok();
    url
}

async fn prepare_database_in_turn(coordinator: &str, name: &str, shards: u32) -> anyhow::Result<String> {
    let nodes = node_urls(coordinator).await?;
    anyhow::ensure!(nodes.len() > 1, "the cluster has no active worker");
    for (i, node) in nodes.iter().enumerate() {
        let admin = sea_orm::Database::connect(node.as_str()).await?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        if i == 0 {
            admin.execute_unprepared(&format!("ALTER DATABASE {name} SET citus.shard_count = {shards}")).await?;
        }
        admin.close().await.ok();
        let db = sea_orm::Database::connect(with_database(node, name)).await?;
        db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS citus").await?;
        db.close().await.ok();
    }
    let url = with_database(coordinator, name);
    let db = sea_orm::Database::connect(url.as_str()).await?;
    let host_port = |u: &str| -> anyhow::Result<(String, String)> {
        let start = u.find('@').map_or(u.find("//").map_or(0, |i| i + 2), |i| i + 1);
        let hp = &u[start..start + u[start..].find('/').unwrap_or(u.len() - start)];
        let (h, p) = hp.split_once(':').unwrap_or((hp, "5432"));
        Ok((h.to_string(), p.to_string()))
    };
    let (host, port) = host_port(coordinator)?;
    db.execute_unprepared(&format!("SELECT citus_set_coordinator_host({}, {port})", quote_literal(&host))).await?;
    for w in &nodes[1..] {
        let (h, p) = host_port(w)?;
        db.execute_unprepared(&format!("SELECT citus_add_node({}, {p})", quote_literal(&h))).await?;
    }
    db.close().await.ok();
    Ok(url)
}

/// A community's own shard (`isolate_tenant`).
#[derive(Debug)]
pub struct Isolated {
    /// The tenant's shard of `institutions`; each co-located table has one beside it.
    pub shard: i64,
    /// Where it is (`host:port` of each placement).
    pub nodes: Vec<String>,
    /// It had a shard of its own already; nothing was done.
    pub already: bool,
}

/// A tenant's id by its code (as the owner).
pub async fn tenant_id(conn: &DatabaseConnection, code: &str) -> anyhow::Result<Option<uuid::Uuid>> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM tenants WHERE code = $1",
            [code.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<uuid::Uuid>("", "id")).transpose()?)
}

/// The tenant's shard of `institutions`, and whether it holds that tenant alone (its hash range
/// is one value).
async fn shard_of(conn: &impl ConnectionTrait, tenant: uuid::Uuid) -> anyhow::Result<(i64, bool, Vec<String>)> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT s.shardid, s.shardminvalue = s.shardmaxvalue AS alone,
                        (SELECT string_agg(p.nodename || ':' || p.nodeport, ',' ORDER BY p.nodename, p.nodeport)
                           FROM pg_dist_shard_placement p WHERE p.shardid = s.shardid) AS nodes
                   FROM pg_dist_shard s
                  WHERE s.shardid = get_shard_id_for_distribution_column('public.institutions', '{tenant}'::uuid)"
            ),
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("institutions is not distributed: run cloudhis migrate first"))?;
    let nodes: Option<String> = row.try_get("", "nodes")?;
    Ok((
        row.try_get("", "shardid")?,
        row.try_get("", "alone")?,
        nodes.unwrap_or_default().split(',').filter(|n| !n.is_empty()).map(String::from).collect(),
    ))
}

/// Puts one community on shards of its own: `isolate_tenant_to_new_shard` on `institutions`
/// with `CASCADE`, which splits the shard holding the tenant, and the same range of every table
/// co-located with it, into the tenant's own and its neighbours'. `block_writes`: writes to
/// the shards being split wait (they are not refused) while the split copies, which needs no
/// logical replication (`wal_level = logical`); reads go on. A community that has its own shard
/// already is left alone.
pub async fn isolate_tenant(conn: &DatabaseConnection, tenant: uuid::Uuid) -> anyhow::Result<Isolated> {
    let (shard, alone, nodes) = shard_of(conn, tenant).await?;
    if alone {
        return Ok(Isolated { shard, nodes, already: true });
    }
    conn.execute_unprepared(&format!(
        "SELECT isolate_tenant_to_new_shard('public.institutions', '{tenant}'::uuid, 'CASCADE', shard_transfer_mode => 'block_writes')"
    ))
    .await?;
    let (shard, alone, nodes) = shard_of(conn, tenant).await?;
    anyhow::ensure!(alone, "the tenant's shard {shard} still holds other tenants after isolating");
    Ok(Isolated { shard, nodes, already: false })
}

/// The audit heads on Citus. On one PostgreSQL the app role may not write `audit_heads`: the
/// `SECURITY DEFINER` functions `audit_head_lock` and `audit_head_advance` do it as the owner.
/// Citus refuses that: a transaction may not reach co-located shards as two users (the app
/// writes `audit_log`, the owner its head, on the same node), "cannot perform query on
/// placements that were modified in this transaction by a different user". So on Citus the
/// functions run as the caller, the app role may select, insert and update its tenant's heads
/// (row-level security as on every tenant table), and a trigger keeps what the functions
/// promised: a head starts at genesis and moves only forward on its own chain. What is lost is
/// the check that the row a head moves to exists; a head moved past the last row is what
/// `audit verify` reports as rows cut off, so tampering stays evident. Idempotent.
async fn audit_heads_invoker(conn: &DatabaseConnection) -> anyhow::Result<()> {
    // Done already (every `migrate` after the first, migrate-on-start included): no DDL lock
    // across the cluster at start-up.
    let done = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_head_guard'
                                AND tgrelid = 'audit_heads'::regclass)
                AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname IN ('audit_head_lock', 'audit_head_advance')
                                   AND prosecdef) AS done",
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "done"))
        .transpose()?
        .unwrap_or(false);
    if done {
        return Ok(());
    }
    // Both signatures: the row's time (migration 34) and the one before it, for replicas of the
    // previous version. Here neither checks the row, so the time is not needed.
    let advance = |at: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION audit_head_advance(p_tenant uuid, p_chain int, p_seq bigint, p_hash text{at})
               RETURNS void LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
             BEGIN
               IF p_tenant IS DISTINCT FROM NULLIF(current_setting('cloudhis.tenant_id', true), '')::uuid THEN
                 RAISE EXCEPTION 'the audit head of another tenant' USING ERRCODE = '42501';
               END IF;
               UPDATE audit_heads h SET seq = p_seq, hash = p_hash
                 WHERE h.tenant_id = p_tenant AND h.chain = p_chain AND h.seq < p_seq;
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'the audit head moves only forward' USING ERRCODE = '42501';
               END IF;
             END $$"
        )
    };
    let (advance, advance_at) = (advance(""), advance(", p_at timestamptz"));
    let guard = "CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP = 'INSERT' AND (NEW.seq <> 0 OR NEW.hash <> repeat('0', 64)) THEN
             RAISE EXCEPTION 'an audit head starts at genesis' USING ERRCODE = '42501';
           END IF;
           IF TG_OP = 'UPDATE' AND (NEW.tenant_id <> OLD.tenant_id OR NEW.chain <> OLD.chain OR NEW.seq <= OLD.seq) THEN
             RAISE EXCEPTION 'the audit head moves only forward' USING ERRCODE = '42501';
           END IF;
           RETURN NEW;
         END $$";
    let grant = format!("GRANT SELECT, INSERT, UPDATE ON audit_heads TO {}", migrations::rls::APP_ROLE);
    let tx = conn.begin().await?;
    for sql in [
        "SET LOCAL citus.enable_unsafe_triggers = on",
        "ALTER FUNCTION audit_head_lock(uuid, int) SECURITY INVOKER",
        &advance,
        &advance_at,
        guard,
        "DROP TRIGGER IF EXISTS audit_head_guard ON audit_heads",
        "CREATE TRIGGER audit_head_guard BEFORE INSERT OR UPDATE ON audit_heads FOR EACH ROW EXECUTE FUNCTION audit_head_guard()",
        &grant,
    ] {
        tx.execute_unprepared(sql).await?;
    }
    tx.commit().await?;
    Ok(())
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
