//! Row-level security on PostgreSQL: defence in depth under the application's own filters. On
//! SQLite there is no RLS; these tests assert the PostgreSQL behaviour and are run by the
//! PostgreSQL suite (`CLOUDHIS_TEST_BACKEND=postgres`, which CI runs).

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use crate::helpers::spawn_app;

async fn count(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it)"]
async fn without_the_tenant_setting_a_raw_query_sees_nothing() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let other = app.load_other_tenant("other-county").await;
    let db = app.state.db.raw();

    // The app's own pool, raw SQL, no tenant set: nothing, on every tenant table.
    let tx = db.begin().await.unwrap();
    for table in ["institutions", "departments", "users", "role_bindings", "audit_log", "audit_heads"] {
        assert_eq!(count(&tx, &format!("SELECT count(*) FROM {table}")).await, 0, "{table} without a tenant");
    }
    tx.rollback().await.unwrap();

    // With tenant B set, a query that forgets its WHERE still sees only B.
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared(&cloudhis::platform::db::set_tenant_sql(other)).await.unwrap();
    let total = count(&tx, "SELECT count(*) FROM institutions").await;
    let theirs = count(&tx, &format!("SELECT count(*) FROM institutions WHERE tenant_id = '{other}'")).await;
    assert_eq!(total, theirs);
    assert!(total >= 13);
    // And cannot write a row for another tenant.
    let err = tx
        .execute_unprepared(&format!(
            "INSERT INTO institutions (tenant_id, id, code, name, kind, division_code, created_at, updated_at)
             SELECT '{}', gen_random_uuid(), 'x', 'x', 'village_clinic', '130999', now(), now()",
            uuid::Uuid::now_v7()
        ))
        .await
        .expect_err("WITH CHECK refuses a foreign tenant id");
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The setting is transaction-local: the next transaction on the pool starts blind again.
    let tx = db.begin().await.unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM institutions").await, 0);
    tx.rollback().await.unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it)"]
async fn every_tenant_table_forces_rls_and_the_app_role_cannot_bypass_it() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    let owner = app.owner_connection().await;
    let rows = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND EXISTS (SELECT 1 FROM information_schema.columns k
                             WHERE k.table_schema = 'public' AND k.table_name = c.relname AND k.column_name = 'tenant_id')",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= 6, "found {} tenant tables", rows.len());
    for row in rows {
        let name: String = row.try_get("", "relname").unwrap();
        let enabled: bool = row.try_get("", "relrowsecurity").unwrap();
        let forced: bool = row.try_get("", "relforcerowsecurity").unwrap();
        assert!(enabled && forced, "table {name} must enable and force row-level security");
    }
    // A partition (the audit trail's months) is reached only through its parent and the parent's
    // policy: the app role holds no privilege on one.
    let reachable = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text FROM pg_class c WHERE c.relispartition
                AND has_table_privilege('cloudhis_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE')",
        ))
        .await
        .unwrap();
    assert!(reachable.is_empty(), "{} partitions the app role may reach directly", reachable.len());

    let me = app
        .state
        .db
        .raw()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text AS who, r.rolsuper, r.rolbypassrls
               FROM pg_roles r WHERE r.rolname = current_user",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(me.try_get::<String>("", "who").unwrap(), "cloudhis_app");
    assert!(!me.try_get::<bool>("", "rolsuper").unwrap());
    assert!(!me.try_get::<bool>("", "rolbypassrls").unwrap());
}

/// The schema stays ready for Citus to distribute every tenant table by `tenant_id` in one
/// co-location group (docs/operations.md): every table but `tenants` (and sea-orm's own migration
/// ledger, which stays local to the coordinator) carries `tenant_id`, leads
/// its primary key with it, has no unique index without it, and every foreign key between tenant
/// tables includes it. A new table or constraint that breaks this fails here, not at sharding time.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it)"]
async fn every_tenant_table_can_be_distributed_by_tenant_id() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    let owner = app.owner_connection().await;
    let rows = |sql: &'static str| {
        let owner = &owner;
        async move {
            owner
                .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap())
                .collect::<Vec<String>>()
        }
    };
    let tables = rows(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'seaql%'",
    )
    .await;
    assert!(tables.len() > 40, "{tables:?}");
    let without_tenant = rows(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE 'seaql%'
            AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')",
    )
    .await;
    assert_eq!(without_tenant, vec!["tenants".to_string()], "only the reference table lacks tenant_id");
    let bad_pk = rows(
        "SELECT i.indrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND i.indisprimary AND c.relname <> 'tenants' AND c.relname NOT LIKE 'seaql%'
            AND (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) <> 'tenant_id'",
    )
    .await;
    assert!(bad_pk.is_empty(), "primary keys not led by tenant_id: {bad_pk:?}");
    let bad_unique = rows(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND i.indisunique AND c.relname <> 'tenants' AND c.relname NOT LIKE 'seaql%'
            AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                             WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) AND a.attname = 'tenant_id')",
    )
    .await;
    assert!(bad_unique.is_empty(), "unique indexes without tenant_id: {bad_unique:?}");
    let bad_fk = rows(
        "SELECT f.conname::text FROM pg_constraint f JOIN pg_namespace n ON n.oid = f.connamespace
          WHERE n.nspname = 'public' AND f.contype = 'f' AND f.confrelid <> 'tenants'::regclass
            AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                             WHERE a.attrelid = f.conrelid AND a.attnum = ANY(f.conkey) AND a.attname = 'tenant_id')",
    )
    .await;
    assert!(bad_fk.is_empty(), "foreign keys between tenant tables without tenant_id: {bad_fk:?}");
}

/// Least privilege: as the app role, with its own tenant set (the strongest position a bug or an
/// injection in the app could reach), every direct write to `tenants` and `audit_heads` and every
/// rewrite of `audit_log` is refused with `insufficient_privilege`, and the functions that replace
/// them refuse another tenant and a rewound head.
#[tokio::test]
#[ignore = "needs PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it)"]
async fn the_app_role_cannot_rewrite_tenants_or_the_audit_chain() {
    let app = spawn_app().await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let other = app.load_other_tenant("other-county").await;
    let admin = app.login("admin").await;
    // Some audited work, so the chain has rows and a head.
    assert_eq!(app.get("/api/v1/audit/events", &admin.token).await.status, 200);
    let mine = admin.tenant_id;
    let db = app.state.db.raw();
    let role = count_text(db, "SELECT current_user").await;
    assert_eq!(role, "cloudhis_app", "the app's pool runs as the app role");

    let forbidden = [
        format!("UPDATE tenants SET settings = '{{}}'::jsonb WHERE id = '{mine}'"),
        format!("UPDATE tenants SET name = 'x' WHERE id = '{other}'"),
        format!("DELETE FROM tenants WHERE id = '{mine}'"),
        format!(
            "INSERT INTO tenants (id, code, name, name_en, settings, created_at, updated_at)
             VALUES ('{}', 'forged', 'x', 'x', '{{}}'::jsonb, now(), now())",
            uuid::Uuid::now_v7()
        ),
        "TRUNCATE tenants CASCADE".to_string(),
        format!("UPDATE audit_heads SET seq = 0, hash = repeat('0', 64) WHERE tenant_id = '{mine}'"),
        format!("DELETE FROM audit_heads WHERE tenant_id = '{mine}'"),
        format!(
            "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ('{}', 0, repeat('0', 64))",
            uuid::Uuid::now_v7()
        ),
        format!("UPDATE audit_log SET action = 'x' WHERE tenant_id = '{mine}'"),
        format!("DELETE FROM audit_log WHERE tenant_id = '{mine}'"),
        "TRUNCATE audit_log".to_string(),
        format!("SELECT audit_head_lock('{other}', 0)"),
        format!("SELECT audit_head_advance('{mine}', 0, 0, repeat('0', 64))"),
        format!("SELECT audit_head_advance('{other}', 0, 1000000, repeat('0', 64))"),
        format!("SELECT audit_head_advance('{mine}', 0, 0, repeat('0', 64), now())"),
        format!("SELECT audit_head_advance('{other}', 0, 1000000, repeat('0', 64), now())"),
        format!("SELECT tenant_apply('{other}', 'other-county', 'x', 'x', '{{}}'::jsonb)"),
        format!("SELECT tenant_apply('{mine}', 'renamed', 'x', 'x', '{{}}'::jsonb)"),
    ];
    for sql in &forbidden {
        let tx = db.begin().await.unwrap();
        tx.execute_unprepared(&cloudhis::platform::db::set_tenant_sql(mine)).await.unwrap();
        let err = tx.execute_unprepared(sql).await.expect_err(sql);
        assert!(
            err.to_string().contains("permission denied")
                || err.to_string().contains("42501")
                || err.to_string().contains("moves only forward")
                || err.to_string().contains("another tenant")
                || err.to_string().contains("scoped to it")
                || err.to_string().contains("keeps its code")
                // On Citus the app role writes its tenant's heads (forward only, see
                // `platform::citus`); another tenant's row is refused by the policy.
                || err.to_string().contains("row-level security"),
            "{sql}: {err}"
        );
        tx.rollback().await.unwrap();
    }
    // What the app does need still works: reading, and the functions on its own tenant.
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared(&cloudhis::platform::db::set_tenant_sql(mine)).await.unwrap();
    assert_eq!(count(&tx, "SELECT count(*) FROM tenants").await, 2);
    assert!(count(&tx, &format!("SELECT count(*) FROM audit_heads WHERE tenant_id = '{mine}'")).await >= 1);
    tx.rollback().await.unwrap();
    if !crate::helpers::on_citus() {
        // The head moves only to a row that was appended, at the time it names (the check reads
        // that month's partition). On Citus the functions run as the caller and do not check the
        // row (see `platform::citus`): a head past the last row is what `audit verify` reports.
        let tx = db.begin().await.unwrap();
        tx.execute_unprepared(&cloudhis::platform::db::set_tenant_sql(mine)).await.unwrap();
        tx.execute_unprepared(&format!(
            "INSERT INTO audit_log (tenant_id, chain, seq, id, occurred_at, action, resource_type, purpose, outcome, prev_hash, hash)
             SELECT tenant_id, chain, seq + 1, gen_random_uuid(), '2026-12-07 10:00:00.000001+00', 'x', 'y', 'treatment',
                    'success', hash, repeat('a', 64)
               FROM audit_heads WHERE tenant_id = '{mine}' AND chain = 0"
        ))
        .await
        .unwrap();
        let advance = |at: &str| {
            format!(
                "SELECT audit_head_advance('{mine}', 0, (SELECT seq + 1 FROM audit_heads WHERE tenant_id = '{mine}' AND chain = 0),
                                           repeat('a', 64), '{at}')"
            )
        };
        tx.execute_unprepared("SAVEPOINT wrong_time").await.unwrap();
        let err =
            tx.execute_unprepared(&advance("2026-12-07 10:00:00.000002+00")).await.expect_err("a time no row has");
        assert!(err.to_string().contains("to an appended row"), "{err}");
        tx.execute_unprepared("ROLLBACK TO SAVEPOINT wrong_time").await.unwrap();
        tx.execute_unprepared(&advance("2026-12-07 10:00:00.000001+00")).await.expect("the appended row's time");
        tx.rollback().await.unwrap();
    }
    // And the chain the forbidden statements tried to rewrite still verifies.
    let out = app.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A tenant file still applies, through the function.
    let out = app.cli(&["tenants", "apply", cloudhis::cli::DEMO_TENANT_PATH]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn count_text(conn: &impl ConnectionTrait, sql: &str) -> String {
    conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap()
}
