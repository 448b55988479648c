//! The command line: `serve`, `migrate`, `tenants apply|list`, `openapi`, `audit verify|archive|verify-archive`,
//! `seed`, `dedup`, `accounts reconcile|verify-replay`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::onboarding;
use crate::platform::config::Config;
use crate::platform::state::AppState;
use crate::platform::{Db, telemetry};
use crate::startup::{self, Application};
use crate::tenancy::domain::ApplyReport;
use crate::tenancy::service as tenancy;

/// The demo community, also compiled in so the binary works from any directory.
pub const DEMO_TENANT: &str = include_str!("../tenants/demo-county.toml");
pub const DEMO_TENANT_PATH: &str = "tenants/demo-county.toml";

#[derive(Debug, Parser)]
#[command(name = "cloudhis", version, about = "County-township-village integrated cloud HIS (县乡村一体化云HIS)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server
    Serve {
        /// Apply tenants/demo-county.toml and load demo data on first start
        #[arg(long)]
        demo: bool,
        /// With --demo: months of history (visits, referrals, follow-ups, payments) loaded into a
        /// fresh demo community; 0 for none
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(0..=24))]
        history_months: u32,
    },
    /// Run pending database migrations (under an advisory lock on PostgreSQL)
    Migrate,
    /// Tenant files
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Print the OpenAPI document
    Openapi,
    /// The audit trail
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Load synthetic residents (with planted duplicates) into a tenant
    Seed {
        #[arg(long, default_value = "demo-county")]
        tenant: String,
        /// Records to generate, duplicates included
        #[arg(long, default_value_t = 1000)]
        records: usize,
        /// Share of the records that are duplicates of another
        #[arg(long, default_value_t = 0.1)]
        duplicate_share: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Event delivery: dead letters, redrive, the anti-entropy sweep
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Statistics rollups
    Statistics {
        #[command(subcommand)]
        command: StatisticsCommand,
    },
    /// The consolidated accounts
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Bulk imports
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Scale-out on a Citus cluster
    Citus {
        #[command(subcommand)]
        command: CitusCommand,
    },
    /// Find duplicate persons across a whole tenant
    Dedup {
        #[arg(long, default_value = "demo-county")]
        tenant: String,
        /// Put certain and probable pairs in the review queue
        #[arg(long)]
        queue: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import legacy residents from a CSV (UTF-8 or GB18030) or XLSX file with a header row,
    /// matching each against the community's index; writes the dedupe report (report.xlsx and
    /// report.csv) to --report-dir. Running the same file again changes nothing; a run that
    /// stopped resumes.
    Residents {
        file: std::path::PathBuf,
        #[arg(long)]
        tenant: String,
        /// The column holding each row's institution code (overrides the mapping)
        #[arg(long)]
        institution_column: Option<String>,
        /// A TOML mapping of columns and encoding (see docs/operations.md)
        #[arg(long)]
        mapping: Option<std::path::PathBuf>,
        /// Where to write report.xlsx and report.csv
        #[arg(long, default_value = ".")]
        report_dir: std::path::PathBuf,
        /// Rows per transaction
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Apply a tenant file (idempotent; a file with any error is rejected whole)
    Apply { file: std::path::PathBuf },
    /// List tenants
    List,
}

#[derive(Debug, Subcommand)]
pub enum StatisticsCommand {
    /// Recompute every statistics rollup of a tenant from the source tables (visits, charges,
    /// referrals, registries); events already written count as applied
    Rebuild {
        #[arg(long, default_value = "demo-county")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Check, per institution, that one day's billing equals the ledger; every difference is
    /// printed with its document and event (exit status 1 when there is one)
    Reconcile {
        #[arg(long, default_value = "demo-county")]
        tenant: String,
        /// The day (China Standard Time), YYYY-MM-DD; today by default
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
        /// One institution's code; all of them by default
        #[arg(long)]
        institution: Option<String>,
    },
    /// Rebuild the ledger's balances from the published events and compare them with the
    /// stored ones (exit status 1 when they differ)
    VerifyReplay {
        #[arg(long, default_value = "demo-county")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List the events a consumer could not apply, oldest first
    DeadLetters {
        #[arg(long)]
        consumer: Option<String>,
    },
    /// Deliver dead letters again (each is applied once, however often it is redriven)
    Redrive {
        #[arg(long)]
        consumer: Option<String>,
        #[arg(long)]
        event: Option<uuid::Uuid>,
    },
    /// Run the anti-entropy sweep once: apply every event a consumer should have by now
    Sweep,
}

#[derive(Debug, Subcommand)]
pub enum CitusCommand {
    /// Put one community on shards of its own (every co-located table), for a large county
    /// that should not share a shard with others; a second run says it is already
    IsolateTenant {
        /// The tenant's code (as in its tenant file)
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every tenant's hash chain and report the first broken link
    Verify,
    /// Write every month before --before out to a file, seal each chain there and remove the
    /// month from the database (its partition on PostgreSQL)
    Archive {
        /// The first month kept (YYYY-MM): every month before it is archived
        #[arg(long, value_parser = parse_month)]
        before: chrono::NaiveDate,
        /// Where the archive files go (audit_log_YYYY_MM.jsonl)
        #[arg(long)]
        out: std::path::PathBuf,
        /// Months kept in the database, counted back from today; at least 6 (Cybersecurity Law, art. 21)
        #[arg(long, default_value_t = crate::audit::archive::MIN_KEEP_MONTHS)]
        keep_months: u32,
    },
    /// Check an archive file against the seals the archive left in the database
    VerifyArchive {
        /// The file (audit_log_YYYY_MM.jsonl)
        file: std::path::PathBuf,
    },
}

/// A month as YYYY-MM, as its first day.
fn parse_month(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a month (YYYY-MM)"))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Openapi = cli.command {
        println!("{}", startup::openapi_document());
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = Config::from_env()?;
    let _telemetry = telemetry::init(loaded.config.log_format, loaded.config.otlp_endpoint.as_deref());
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut config = loaded.config;
    if !matches!(cli.command, Command::Serve { .. }) {
        // One-off commands write through the outbox and leave publishing to the servers' relay:
        // no background workers here, and no broker connection to wait for.
        config.workers = false;
        config.amqp_url = None;
    }
    match cli.command {
        Command::Openapi => unreachable!("handled above"),
        Command::Serve { demo, history_months } => {
            let app = Application::build(config).await?;
            if demo {
                load_demo(app.state()).await?;
                let started = std::time::Instant::now();
                if let Some(h) = crate::demo::load_history(app.state(), history_months).await? {
                    tracing::info!(
                        patients = h.patients,
                        visits = h.visits,
                        referrals = h.referrals,
                        followups = h.followups,
                        refused = h.refused,
                        seconds = started.elapsed().as_secs(),
                        "demo history loaded: {history_months} months"
                    );
                }
            }
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let db = Db::connect_owner(&config).await?;
            db.migrate().await?;
            println!("migrations are up to date");
        }
        Command::Tenants { command: TenantsCommand::Apply { file } } => return apply_tenant_file(config, &file).await,
        Command::Tenants { command: TenantsCommand::List } => {
            let state = startup::connect(config).await?;
            for t in tenancy::list_tenants(&state.db).await? {
                println!("{}\t{}\t{}\t{}", t.code, t.id, t.name, t.name_en.unwrap_or_default());
            }
        }
        Command::Seed { tenant, records, duplicate_share, seed } => {
            seed_residents(config, &tenant, records, duplicate_share, seed).await?
        }
        Command::Dedup { tenant, queue } => dedup(config, &tenant, queue).await?,
        Command::Citus { command: CitusCommand::IsolateTenant { code } } => return isolate_tenant(config, &code).await,
        Command::Import { command } => return import(config, command).await,
        Command::Accounts { command } => return accounts(config, command).await,
        Command::Statistics { command: StatisticsCommand::Rebuild { tenant } } => {
            rebuild_statistics(config, &tenant).await?
        }
        Command::Audit { command: AuditCommand::Verify } => return verify_audit(config).await,
        Command::Audit { command: AuditCommand::Archive { before, out, keep_months } } => {
            let owner = Db::connect_owner(&config).await?;
            let today = chrono::Utc::now().date_naive();
            let request = crate::audit::archive::ArchiveRequest { before, keep_months, today, out };
            let months = crate::audit::archive::archive(&owner, &request).await?;
            for m in &months {
                match &m.file {
                    Some(f) => println!(
                        "{}: {} rows to {} (sha256 {})",
                        m.month.format("%Y-%m"),
                        m.rows,
                        f.display(),
                        m.sha256
                    ),
                    None => println!("{}: no rows", m.month.format("%Y-%m")),
                }
            }
            println!("{} month(s) archived and sealed", months.len());
        }
        Command::Audit { command: AuditCommand::VerifyArchive { file } } => {
            let owner = Db::connect_owner(&config).await?;
            match crate::audit::archive::verify_file(&owner, &file).await {
                Ok(c) => println!("archive intact: {} rows on {} chain(s), as sealed", c.rows, c.chains),
                Err(e) => {
                    eprintln!("archive BROKEN: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Events { command } => return events(config, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A tenant by its code, or a one-line error naming it.
async fn tenant_by_code(state: &AppState, code: &str) -> anyhow::Result<crate::tenancy::service::TenantInfo> {
    tenancy::find_tenant_by_code(&state.db, code)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant `{code}`; apply its tenant file first"))
}

async fn apply_tenant_file(config: Config, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let spec = match onboarding::parse(&path.display().to_string(), &text) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let state = startup::connect(config).await?;
    let report = onboarding::apply(&state.db, &spec).await?;
    if report.changed() {
        state.authz.changed(report.tenant_id).await;
    }
    print_report(&spec.code, &report);
    Ok(ExitCode::SUCCESS)
}

async fn seed_residents(config: Config, tenant: &str, records: usize, share: f64, seed: u64) -> anyhow::Result<()> {
    if !(0.0..=0.5).contains(&share) {
        anyhow::bail!("--duplicate-share must be between 0 and 0.5");
    }
    let state = startup::connect(config).await?;
    let t = tenant_by_code(&state, tenant).await?;
    let r = crate::patients::seed::seed(&state.db, &state.pii, t.id, records, share, seed).await?;
    println!(
        "seeded {} persons ({} planted duplicates, {} of them linked at import by resident ID), {} registrations in {:.1} s",
        r.persons,
        r.duplicates,
        r.linked,
        r.registrations,
        r.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn import(config: Config, command: ImportCommand) -> anyhow::Result<ExitCode> {
    use crate::patients::import;
    let ImportCommand::Residents { file, tenant, institution_column, mapping, report_dir, batch } = command;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
    let mapping = match &mapping {
        Some(p) => import::mapping::parse(&String::from_utf8_lossy(&read(p)?)),
        None => Ok(import::Mapping::default()),
    };
    let bytes = read(&file)?;
    let prepared = mapping.and_then(|m| import::prepare(&bytes, &m, institution_column.as_deref()));
    let (table, at) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: {} {}", file.display(), e.reason(), e.details().map(|d| d.to_string()).unwrap_or_default());
            return Ok(ExitCode::FAILURE);
        }
    };
    std::fs::create_dir_all(&report_dir)?;
    let state = startup::connect(config).await?;
    let t = tenant_by_code(&state, &tenant).await?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let job = import::create_job(&state.db, t.id, &name, table.rows.len() as u64, None).await?;
    let opts = import::Options { job, batch, actor: None, stop_after_batches: None };
    let started = std::time::Instant::now();
    let bar = |done: u64, total: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        eprint!("\r[{:<40}] {pct:>3}% {done}/{total} rows, {rate:.0} rows/s", "#".repeat(pct as usize * 40 / 100));
    };
    let report = import::execute(&state.db, &state.config, &state.pii, t.id, &table, &at, &opts, &bar).await;
    eprintln!();
    let report = report?;
    std::fs::write(report_dir.join("report.xlsx"), report.to_xlsx()?)?;
    std::fs::write(report_dir.join("report.csv"), report.to_csv()?)?;
    let c = &report.counts;
    println!(
        "import {job}: {} rows in {:.1} s: {} new persons, {} linked, {} probable pairs for review, {} already imported, {} rejected, {} flagged ({} without sex, {} without birth date); report in {}",
        c.rows,
        started.elapsed().as_secs_f64(),
        c.new_persons,
        c.linked,
        c.probable,
        c.already_imported,
        c.rejected,
        c.flagged,
        c.sex_missing,
        c.birth_date_missing,
        report_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn isolate_tenant(config: Config, code: &str) -> anyhow::Result<ExitCode> {
    let db = Db::connect_owner(&config).await?;
    if !crate::platform::citus::present(db.raw()).await? {
        eprintln!("this database is not a Citus coordinator (no citus extension)");
        return Ok(ExitCode::from(2));
    }
    let Some(tenant) = crate::platform::citus::tenant_id(db.raw(), code).await? else {
        eprintln!("no tenant `{code}`; apply its tenant file first");
        return Ok(ExitCode::from(2));
    };
    let r = crate::platform::citus::isolate_tenant(db.raw(), tenant).await?;
    if r.already {
        println!("tenant {code} already has shard {} of its own, on {}", r.shard, r.nodes.join(", "));
    } else {
        println!("tenant {code} isolated on shard {} (with its co-located shards), on {}", r.shard, r.nodes.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn dedup(config: Config, tenant: &str, queue: bool) -> anyhow::Result<()> {
    let state = startup::connect(config).await?;
    let t = tenant_by_code(&state, tenant).await?;
    let weights = crate::patients::matching::MatchWeights::from_settings(&t.settings);
    let r = crate::patients::dedup::run(&state.db, &state.pii, t.id, &weights, queue).await?;
    println!(
        "{} persons: {} certain, {} probable, {} possible pairs; {} comparisons in {} blocks ({} oversized skipped); load {:.1} s, match {:.1} s{}",
        r.persons,
        r.certain,
        r.probable,
        r.possible,
        r.stats.comparisons,
        r.stats.blocks,
        r.stats.skipped_blocks,
        r.load_time.as_secs_f64(),
        r.stats.elapsed.as_secs_f64(),
        if queue { format!("; {} pairs queued for review", r.queued) } else { String::new() }
    );
    Ok(())
}

async fn rebuild_statistics(config: Config, tenant: &str) -> anyhow::Result<()> {
    let state = startup::connect(config).await?;
    let t = tenant_by_code(&state, tenant).await?;
    let started = std::time::Instant::now();
    let r = crate::statistics::service::rebuild(&state.db, t.id).await?;
    println!(
        "tenant {tenant}: statistics rebuilt in {:.1} s: {} daily rows, {} referrals, {} enrollments, {} follow-ups",
        started.elapsed().as_secs_f64(),
        r.daily_rows,
        r.referrals,
        r.enrollments,
        r.followups
    );
    Ok(())
}

async fn events(config: Config, command: EventsCommand) -> anyhow::Result<ExitCode> {
    use crate::platform::delivery;
    let (grace, window) = (config.sweep_grace, config.sweep_window);
    let state = startup::connect(config).await?;
    let handlers = startup::handlers();
    match command {
        EventsCommand::DeadLetters { consumer } => {
            let letters = delivery::dead_letters(&state.db, consumer.as_deref(), None).await?;
            for d in &letters {
                println!(
                    "{}\t{}\t{}\t{}\tattempts={}\t{}",
                    d.dead_at.format("%Y-%m-%d %H:%M:%S"),
                    d.consumer,
                    d.event_type,
                    d.event_id,
                    d.attempts,
                    d.error
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        EventsCommand::Redrive { consumer, event } => {
            let r = delivery::redrive(&state.db, &handlers, consumer.as_deref(), event).await?;
            println!("redrive: {} applied, {} already applied, {} still failing", r.applied, r.already, r.failed);
            if r.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        EventsCommand::Sweep => {
            let r = delivery::sweep(&state.db, &handlers, grace, window).await?;
            println!("sweep: {} missing, {} applied", r.missing, r.applied);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_audit(config: Config) -> anyhow::Result<ExitCode> {
    let state = startup::connect(config).await?;
    let report = crate::audit::verify(&state.db).await?;
    for chain in &report.chains {
        println!("{}: {} rows checked", chain.tenant_code, chain.rows);
    }
    if let Some(b) = report.broken {
        eprintln!(
            "audit chain BROKEN in tenant {} chain {} at row seq={}{}: {}",
            b.tenant_code,
            b.chain,
            b.seq,
            b.id.map(|i| format!(" id={i}")).unwrap_or_default(),
            b.reason
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("audit chain intact");
    Ok(ExitCode::SUCCESS)
}

async fn accounts(config: Config, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    use crate::platform::SystemScope;
    let state = startup::connect(config).await?;
    let code = match &command {
        AccountsCommand::Reconcile { tenant, .. } | AccountsCommand::VerifyReplay { tenant } => tenant.clone(),
    };
    let t =
        tenancy::find_tenant_by_code(&state.db, &code).await?.ok_or_else(|| anyhow::anyhow!("no tenant `{code}`"))?;
    let tx = state.db.begin(&SystemScope { tenant: t.id }).await?;
    let institutions = tenancy::list_institutions(&tx).await?;
    let name =
        |id: uuid::Uuid| institutions.iter().find(|i| i.id == id).map(|i| i.code.clone()).unwrap_or(id.to_string());
    match command {
        AccountsCommand::Reconcile { day, institution, .. } => {
            let day = day.unwrap_or_else(|| crate::platform::clock::china_date(chrono::Utc::now()));
            let id = match institution {
                Some(c) => Some(
                    institutions
                        .iter()
                        .find(|i| i.code == c)
                        .ok_or_else(|| anyhow::anyhow!("no institution `{c}` in tenant `{code}`"))?
                        .id,
                ),
                None => None,
            };
            let result = crate::accounts::service::reconcile_in(&tx, id, day).await?;
            tx.rollback().await?;
            let mut differences = 0;
            for crate::accounts::service::InstitutionDay { institution: i, differences: diffs } in &result {
                println!(
                    "{} {}: {}",
                    day,
                    name(*i),
                    if diffs.is_empty() { "reconciled".to_string() } else { format!("{} differences", diffs.len()) }
                );
                for d in diffs {
                    differences += 1;
                    println!(
                        "  {} {} {}: billing {} fen, ledger {} fen, event {}",
                        d.kind,
                        d.document,
                        d.document_id,
                        d.billing_fen,
                        d.ledger_fen,
                        d.event_id.map(|e| e.to_string()).unwrap_or_else(|| "none found".into())
                    );
                }
            }
            if differences > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        AccountsCommand::VerifyReplay { .. } => {
            tx.rollback().await?;
            let diffs = crate::accounts::service::verify_replay(&state.db, t.id).await?;
            if diffs.is_empty() {
                println!("ledger of tenant {code} equals its rebuild from the events");
            } else {
                for d in &diffs {
                    println!(
                        "{} {} {}: stored {} fen, rebuilt {} fen",
                        name(d.institution),
                        d.period,
                        d.account,
                        d.stored_fen,
                        d.rebuilt_fen
                    );
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(code: &str, report: &ApplyReport) {
    if !report.changed() {
        println!("tenant {code}: no changes ({} items unchanged)", report.unchanged);
        return;
    }
    println!(
        "tenant {code}: {} created, {} updated, {} unchanged",
        report.created.len(),
        report.updated.len(),
        report.unchanged
    );
    for c in &report.created {
        println!("  + {c}");
    }
    for u in &report.updated {
        println!("  ~ {u}");
    }
}

/// Applies the demo tenant (from `tenants/` when run from the repo, else the compiled-in copy).
pub async fn load_demo(state: &crate::platform::state::AppState) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(DEMO_TENANT_PATH).unwrap_or_else(|_| DEMO_TENANT.to_string());
    let spec = onboarding::parse(DEMO_TENANT_PATH, &text)?;
    let report = onboarding::apply(&state.db, &spec).await?;
    if report.changed() {
        state.authz.changed(report.tenant_id).await;
    }
    let batches = crate::pharmacy::service::seed_demo_stock(&state.db, report.tenant_id).await?;
    if batches > 0 {
        tracing::info!(batches, "demo stock received");
    }
    if crate::patients::seed::persons_count(&state.db, report.tenant_id).await? == 0 {
        let seeded = crate::patients::seed::seed(&state.db, &state.pii, report.tenant_id, 300, 0.1, 2026).await?;
        tracing::info!(persons = seeded.persons, duplicates = seeded.duplicates, "demo residents loaded");
    }
    tracing::info!(
        tenant.id = %report.tenant_id,
        created = report.created.len(),
        updated = report.updated.len(),
        "demo tenant {} applied; log in with tenant `{}` (see README for the demo logins)",
        spec.code,
        spec.code
    );
    Ok(())
}
