//! Bulk import of legacy residents (issue 22): CSV (UTF-8, GB18030) and XLSX with every kind of
//! bad row, the dedupe report against a file whose truth is known, idempotent reruns, a run
//! stopped halfway that resumes to the same persons, the command line, and the upload API.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cloudhis::patients::import::{self, Mapping, Options, Report};
use cloudhis::patients::resident_id::check_character;
use cloudhis::platform::SystemScope;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Session, TestApp, spawn_app};

/// A valid resident ID for a birth date (YYYYMMDD) and a sequence whose last digit sets the sex
/// (odd: male).
fn rid(birth: &str, seq: &str) -> String {
    let body = format!("110105{birth}{seq}");
    format!("{body}{}", check_character(body.as_bytes()))
}

const VILLAGE: &str = "130999101201";

/// Rows with a known fate. Lines: the header is 1.
fn rows() -> Vec<Vec<String>> {
    let male = rid("19491231", "001");
    let r = |cells: &[&str]| cells.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        r(&["档案编号", "姓名", "性别", "出生日期", "身份证号", "联系电话", "行政区划代码", "医保号", "机构编码"]),
        r(&["A1", "张伟", "男", "1949-12-31", "", "13800138000", VILLAGE, "", "th-dongguan"]), // 2 new
        r(&["A2", "张伟", "1", "19491231", &male, "13800138000", VILLAGE, "", "county-hospital"]), // 3 links to A1
        r(&["A3", "李娜", "女", "1985/3/7", &male, "", "", "", "th-dongguan"]), // 4 ID of someone else: held, flagged
        r(&["A4", "", "男", "1990", "", "", "", "", "th-dongguan"]),            // 5 refused: no name
        r(&["A5", "王芳", "女", "1970-01-01", "", "13900139000", "", "INS12345", "nowhere"]), // 6 refused: institution
        r(&["A6", "王芳", "女", "1970-01-01", "", "13900139000", "", "INS12345", "county-hospital"]), // 7 new
        r(&["A6", "王芳", "女", "1970-01-01", "", "13900139000", "", "INS12345", "county-hospital"]), // 8 refused: repeated id
        r(&["A7", "赵六", "", "", "", "", "", "", "th-dongguan"]), // 9 new, flagged: no sex, no birth date
        r(&["A8", "王芳", "", "", "", "13900139000", "", "", "th-xihe"]), // 10 new, probable pair with A6, flagged
        r(&["A9", "孙七", "男", "1950年3月7日", "", "12345", "", "", "th-xihe"]), // 11 new, flagged: phone
        // 12 张伟's ID under a brother's name (the same sex and birth date the ID says): new, the
        // ID held as taken, a probable pair with 张伟, never a link.
        r(&["A10", "张强", "男", "1949-12-31", &male, "13800138000", VILLAGE, "", "th-xihe"]),
    ]
}

fn csv_text() -> String {
    rows().iter().map(|r| r.join(",")).collect::<Vec<_>>().join("\n") + "\n"
}

/// The same rows as a workbook, with the phone numbers and one birth date stored as Excel numbers
/// and dates, as a spreadsheet exported from an old system has them.
fn xlsx_bytes() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
    for (r, row) in rows().iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            if r > 0 && c == 5 && !v.is_empty() && v.len() == 11 {
                sheet.write_number(r, c, v.parse::<f64>().unwrap()).unwrap();
            } else if r == 1 && c == 3 {
                let d = rust_xlsxwriter::ExcelDateTime::from_ymd(1949, 12, 31).unwrap();
                sheet.write_datetime_with_format(r, c, &d, &date).unwrap();
            } else {
                sheet.write_string(r, c, v).unwrap();
            }
        }
    }
    book.save_to_buffer().unwrap()
}

async fn run(app: &TestApp, tenant: Uuid, bytes: &[u8], batch: usize, stop: Option<usize>) -> Result<Report, String> {
    let (table, at) = import::prepare(bytes, &Mapping::default(), None).map_err(|e| e.reason())?;
    let job = import::create_job(&app.state.db, tenant, "test.csv", table.rows.len() as u64, None).await.unwrap();
    let opts = Options { job, batch, actor: None, stop_after_batches: stop };
    import::execute(&app.state.db, &app.state.config, &app.state.pii, tenant, &table, &at, &opts, &|_, _| {})
        .await
        .map_err(|e| e.reason())
}

/// Rows of a query about one tenant: `$T` in `sql` is its id (bound, so SQLite, which has no
/// row-level security, sees that tenant only too).
async fn query(app: &TestApp, tenant: Uuid, sql: &str) -> Vec<sea_orm::QueryResult> {
    let tx = app.state.db.begin(&SystemScope { tenant }).await.unwrap();
    let backend = tx.get_database_backend();
    let sql = sql.replace("$T", if backend == DbBackend::Sqlite { "?" } else { "$1" });
    let rows = tx.query_all_raw(Statement::from_sql_and_values(backend, sql, [tenant.into()])).await.unwrap();
    tx.rollback().await.unwrap();
    rows
}

async fn count(app: &TestApp, tenant: Uuid, table: &str) -> i64 {
    let rows = query(app, tenant, &format!("SELECT count(*) AS n FROM {table} WHERE tenant_id = $T")).await;
    rows[0].try_get::<i64>("", "n").unwrap()
}

fn assert_known_truth(r: &Report, what: &str) {
    let c = &r.counts;
    assert_eq!((c.rows, c.new_persons, c.linked, c.rejected), (11, 7, 1, 3), "{what}: {c:?}");
    assert_eq!(r.links.iter().map(|l| l.line).collect::<Vec<_>>(), [3], "{what}");
    assert!(r.links[0].evidence.contains("Phone") && r.links[0].evidence.contains("Address"), "{what}: {:?}", r.links);
    let rejected: Vec<(u64, &str)> = r.rejected.iter().map(|x| (x.line, x.code.as_str())).collect();
    assert_eq!(
        rejected,
        [(5, "name_required"), (6, "institution_unknown"), (8, "source_record_id_repeated")],
        "{what}"
    );
    assert_eq!(
        r.probable.iter().map(|p| (p.line, p.candidate_name.as_str())).collect::<Vec<_>>(),
        [(10, "王芳"), (12, "张伟")]
    );
    let flagged: HashMap<u64, &str> = r.flagged.iter().map(|f| (f.line, f.flags.as_str())).collect();
    assert_eq!(flagged.len(), 5, "{what}: {flagged:?}");
    assert_eq!(flagged[&12], "resident_id_taken");
    assert_eq!(flagged[&4], "resident_id_disagrees");
    assert_eq!(flagged[&9], "sex_missing,birth_date_missing");
    assert_eq!(flagged[&10], "sex_missing,birth_date_missing");
    assert_eq!(flagged[&11], "phone_invalid");
    assert_eq!((c.sex_missing, c.birth_date_missing, c.flagged, c.probable), (2, 2, 5, 2), "{what}");
}

#[tokio::test]
async fn csv_in_utf8_and_gb18030_and_xlsx_import_with_a_true_report_and_a_second_run_changes_nothing() {
    let app = spawn_app().await;
    let text = csv_text();
    let (gb, _, _) = encoding_rs::GB18030.encode(&text);
    let files: [(&str, Vec<u8>); 3] =
        [("utf-8", text.clone().into_bytes()), ("gb18030", gb.into_owned()), ("xlsx", xlsx_bytes())];
    for (what, bytes) in files {
        let tenant = app.load_other_tenant(&format!("imp-{what}")).await;
        let first = run(&app, tenant, &bytes, 4, None).await.unwrap();
        assert_known_truth(&first, what);
        let persons = count(&app, tenant, "persons").await;
        let registrations = count(&app, tenant, "registrations").await;
        assert_eq!((persons, registrations), (7, 8), "{what}: A2 adds a registration at the county hospital");
        assert_eq!(count(&app, tenant, "duplicate_candidates").await, 2, "{what}: the probable pairs are queued");
        // The resident ID that disagrees with 李娜 is held on her registration, not on her, and
        // 张伟's, given under 张强's name, on 张强's.
        let sql = "SELECT count(*) AS n FROM registrations WHERE tenant_id = $T AND held_resident_id_enc IS NOT NULL";
        let held = query(&app, tenant, sql).await[0].try_get::<i64>("", "n").unwrap();
        assert_eq!(held, 2, "{what}");

        // The import's medical record numbers came from the counters: a clinic registering
        // someone afterwards gets a number of its own.
        let doctor = app.login_in(&format!("imp-{what}"), "township.doctor").await;
        let r = app
            .post(
                "/api/v1/patients",
                &doctor.token,
                serde_json::json!({"name": "新来", "sex": "male", "birth_date": "1999"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let sql = "SELECT count(*) AS n FROM (SELECT institution_id, mrn FROM registrations WHERE tenant_id = $T \
                   GROUP BY institution_id, mrn HAVING count(*) > 1) AS d";
        assert_eq!(query(&app, tenant, sql).await[0].try_get::<i64>("", "n").unwrap(), 0, "{what}: MRNs are unique");
        let registrations = registrations + 1;
        let persons = persons + 1;

        let again = run(&app, tenant, &bytes, 4, None).await.unwrap();
        assert_eq!((again.counts.new_persons, again.counts.linked, again.counts.already_imported), (0, 0, 8), "{what}");
        assert_eq!(again.counts.rejected, 3, "{what}: refused rows (the repeated id too) are refused again");
        assert_eq!(count(&app, tenant, "persons").await, persons, "{what}");
        assert_eq!(count(&app, tenant, "registrations").await, registrations, "{what}");
        assert_eq!(count(&app, tenant, "duplicate_candidates").await, 2, "{what}");
    }
}

#[tokio::test]
async fn the_report_lists_every_entry_in_csv_and_xlsx_with_chinese_headers() {
    let app = spawn_app().await;
    let tenant = app.load_other_tenant("imp-report").await;
    let r = run(&app, tenant, csv_text().as_bytes(), 100, None).await.unwrap();
    let csv = String::from_utf8(r.to_csv().unwrap()).unwrap();
    assert!(csv.starts_with("\u{feff}类别,行号,原系统编号,姓名"), "{csv}");
    let kinds = |k: &str| csv.lines().filter(|l| l.starts_with(k)).count();
    assert_eq!(
        (kinds("自动关联"), kinds("疑似重复"), kinds("拒绝"), kinds("数据质量"), kinds("汇总")),
        (1, 2, 3, 5, 9)
    );
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(r.to_xlsx().unwrap())).unwrap();
    use calamine::Reader;
    assert_eq!(book.sheet_names(), ["汇总", "自动关联", "疑似重复", "拒绝", "数据质量"]);
    let rejected = book.worksheet_range("拒绝").unwrap();
    assert_eq!(rejected.height(), 4, "a header and three refused rows");
    let summary = book.worksheet_range("汇总").unwrap();
    assert_eq!(summary.get_value((1, 1)), Some(&calamine::Data::Float(11.0)), "counts are numbers");
}

/// Synthetic residents (with planted duplicates) as a CSV, for runs larger than a hand-made file.
fn synthetic_csv(records: usize, seed: u64) -> String {
    let cfg = cloudhis::patients::synth::SynthConfig {
        records,
        duplicate_share: 0.2,
        seed,
        villages: cloudhis::patients::synth::county_villages("130999", 3, 5),
        family_share: 0.1,
    };
    let mut out = String::from("档案编号,姓名,性别,出生日期,身份证号,联系电话,行政区划代码,医保号,机构编码\n");
    let places = ["th-dongguan", "th-xihe", "th-nanshan", "county-hospital"];
    for (i, r) in cloudhis::patients::synth::generate(&cfg).iter().enumerate() {
        let (birth, sex) = (r.birth_text().unwrap_or_default(), r.sex_zh().unwrap_or_default());
        out.push_str(&format!(
            "S{i},{},{sex},{birth},{},{},{},{},{}\n",
            r.name,
            r.resident_id.clone().unwrap_or_default(),
            r.phone.clone().unwrap_or_default(),
            r.division,
            r.insurance_no.clone().unwrap_or_default(),
            places[i % places.len()],
        ));
    }
    out
}

/// Which source rows ended up as one person: the partition of source keys, independent of ids.
async fn partition(app: &TestApp, tenant: Uuid) -> BTreeSet<Vec<String>> {
    let rows = query(app, tenant, "SELECT source_key, person_id FROM import_rows WHERE tenant_id = $T").await;
    let mut groups: HashMap<Uuid, Vec<String>> = HashMap::new();
    for r in rows {
        groups.entry(r.try_get("", "person_id").unwrap()).or_default().push(r.try_get("", "source_key").unwrap());
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

#[tokio::test]
async fn a_run_stopped_halfway_resumes_to_the_same_persons_as_an_uninterrupted_one() {
    let app = spawn_app().await;
    let file = synthetic_csv(400, 2207);
    let whole = app.load_other_tenant("imp-whole").await;
    let full = run(&app, whole, file.as_bytes(), 50, None).await.unwrap();
    assert!(full.counts.linked > 10 && full.counts.new_persons > 300, "{:?}", full.counts);

    let resumed = app.load_other_tenant("imp-resumed").await;
    let stopped = run(&app, resumed, file.as_bytes(), 50, Some(3)).await;
    assert!(stopped.unwrap_err().contains("stopped after 3 batches"));
    assert_eq!(partition(&app, resumed).await.iter().map(Vec::len).sum::<usize>(), 150, "three batches committed");
    let rest = run(&app, resumed, file.as_bytes(), 50, None).await.unwrap();
    assert_eq!(rest.counts.already_imported, 150);
    assert_eq!(partition(&app, resumed).await, partition(&app, whole).await, "the same rows make the same persons");
    for table in ["persons", "registrations", "duplicate_candidates"] {
        assert_eq!(count(&app, resumed, table).await, count(&app, whole, table).await, "{table}");
    }
}

#[tokio::test]
async fn the_command_line_imports_with_a_mapping_and_writes_both_reports() {
    let app = spawn_app().await;
    app.load_demo().await;
    let dir = app.dir.path();
    let file = dir.join("居民.csv");
    let text = csv_text().replace("机构编码", "所属机构").replace("档案编号", "HIS_ID");
    std::fs::write(&file, encoding_rs::GB18030.encode(&text).0).unwrap();
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, "encoding = \"gb18030\"\n[columns]\nsource_record_id = \"HIS_ID\"\n").unwrap();
    let reports = dir.join("reports");
    let args =
        ["import", "residents", file.to_str().unwrap(), "--tenant", "demo-county", "--institution-column", "所属机构"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--mapping", mapping.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    let out = app.cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("7 new persons, 1 linked, 2 probable pairs for review"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("100%"), "a progress bar");
    assert!(std::fs::read(reports.join("report.xlsx")).unwrap().starts_with(b"PK"));
    assert!(std::fs::read_to_string(reports.join("report.csv")).unwrap().contains("source_record_id_repeated"));
    // A file without the column the mapping names is refused before anything is written.
    let out = app.cli(&["import", "residents", file.to_str().unwrap(), "--tenant", "demo-county"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("institution"), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn upload(app: &TestApp, token: &str, name: &str, bytes: Vec<u8>, mapping: Option<&str>) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    if let Some(m) = mapping {
        form = form.text("mapping", m.to_string());
    }
    let r = app
        .client
        .post(format!("{}/api/v1/imports/residents", app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Uploads the test workbook as `admin` and waits for its job to end; returns the job id.
pub async fn finished_import(app: &TestApp, admin: &Session) -> String {
    let (status, job) = upload(app, &admin.token, "residents.xlsx", xlsx_bytes(), None).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    // Wait for the job's own state to leave `running`, polling its progress as a client would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.get(&format!("/api/v1/imports/{id}"), &admin.token).await.body["status"] == "running" {
        assert!(tokio::time::Instant::now() < deadline, "import {id} still running after a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

#[tokio::test]
async fn the_tenant_administrator_uploads_follows_progress_and_downloads_the_report() {
    let app = spawn_app().await;
    app.load_demo().await;
    let admin = app.login("admin").await;
    let id = finished_import(&app, &admin).await;
    let done = app.get(&format!("/api/v1/imports/{id}"), &admin.token).await.body;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["percent"], 100);
    assert_eq!(done["counts"]["new_persons"], 7);
    assert_eq!(done["counts"]["rejected"], 3);
    let list = app.get("/api/v1/imports", &admin.token).await;
    assert_eq!(list.body[0]["id"], id.as_str());
    let report = app.get(&format!("/api/v1/imports/{id}/report?format=csv"), &admin.token).await;
    assert_eq!(report.status, 200);
    assert!(report.text.contains("institution_unknown") && report.text.contains("自动关联"), "{}", report.text);
    let xlsx = app.get(&format!("/api/v1/imports/{id}/report?format=xlsx"), &admin.token).await;
    assert_eq!(xlsx.status, 200);

    // Refusals: a village doctor may not import; a file without a name column, or a broken
    // mapping, is a 422 before any job exists.
    let doctor = app.login("village.doctor").await;
    let (status, body) = upload(&app, &doctor.token, "x.csv", csv_text().into_bytes(), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = upload(&app, &admin.token, "x.csv", "编号,机构编码\n1,th-xihe\n".into(), None).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("import_column_missing")), "{body}");
    assert_eq!(body["details"]["field"], "name");
    let (status, body) = upload(&app, &admin.token, "x.csv", csv_text().into_bytes(), Some("[columns\n")).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("import_mapping_invalid")), "{body}");
    let (status, body) = upload(&app, &admin.token, "x.csv", vec![0x81, 0x30, 0xff, 0x00], None).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("import_file_unreadable")), "{body}");
    assert_eq!(app.get("/api/v1/imports", &admin.token).await.body.as_array().unwrap().len(), 1);
    let other = app.get(&format!("/api/v1/imports/{}", Uuid::now_v7()), &admin.token).await;
    assert_eq!((other.status.as_u16(), other.code()), (404, "import_job_not_found"));
}

/// After an import the tables it filled are analysed at once, by the upload's job before it
/// reads `done` and by the command line before it exits, so the next registration's MPI query
/// is not planned on the statistics of an empty table (with autovacuum off nothing else would analyse them for up to a minute; with it
/// on, autovacuum waits for its own turn).
#[tokio::test]
#[ignore = "needs single-node PostgreSQL (CLOUDHIS_TEST_BACKEND=postgres; .ci/run runs it): Citus shards keep their own statistics"]
async fn an_import_leaves_the_tables_it_filled_analysed() {
    // The server's own pass must not be what analyses them.
    let app = crate::helpers::spawn_app_with(&[("CLOUDHIS_ANALYZE_INTERVAL_SECONDS", "86400")]).await;
    crate::helpers::require_postgres();
    app.load_demo().await;
    let admin = app.login("admin").await;
    let owner = app.owner_connection().await;
    // Seconds since the epoch of each table's last ANALYZE, 0 if never.
    let analysed = || {
        let owner = owner.clone();
        async move {
            let rows = owner
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT relname, coalesce(extract(epoch FROM last_analyze), 0)::float8 AS at
                       FROM pg_stat_user_tables
                      WHERE relname IN ('persons', 'registrations', 'duplicate_candidates') ORDER BY relname",
                ))
                .await
                .unwrap();
            rows.iter().map(|r| r.try_get::<f64>("", "at").unwrap()).collect::<Vec<f64>>()
        }
    };
    assert_eq!(analysed().await, [0.0, 0.0, 0.0], "analysed before any import");

    finished_import(&app, &admin).await;
    // The job analyses before it records its end: once it reads `done`, they are analysed.
    let first = analysed().await;
    assert!(first.iter().all(|&t| t > 0.0), "the upload's job is done, its tables not analysed: {first:?}");

    // The command line analyses before it exits.
    let file = app.dir.path().join("residents.csv");
    std::fs::write(&file, csv_text().replace("A", "B")).unwrap();
    let reports = app.dir.path().join("reports");
    let (file, reports) = (file.to_str().unwrap(), reports.to_str().unwrap());
    let out = app.cli(&["import", "residents", file, "--tenant", "demo-county", "--report-dir", reports]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = analysed().await;
    assert!(second.iter().zip(&first).all(|(b, a)| b > a), "not analysed again: {first:?} then {second:?}");

    // A table whose ANALYZE would queue (behind a VACUUM or an index build: the same lock) is
    // left to autovacuum after a few seconds; the others are analysed and the import ends.
    let holder = sea_orm::TransactionTrait::begin(&owner).await.unwrap();
    holder.execute_unprepared("LOCK TABLE registrations IN SHARE UPDATE EXCLUSIVE MODE").await.unwrap();
    std::fs::write(app.dir.path().join("residents.csv"), csv_text().replace("A", "C")).unwrap();
    let out = app.cli(&["import", "residents", file, "--tenant", "demo-county", "--report-dir", reports]);
    holder.rollback().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third = analysed().await;
    // By name: duplicate_candidates, persons, registrations.
    assert!(third[0] > second[0] && third[1] > second[1], "not analysed again: {second:?} then {third:?}");
    assert_eq!(third[2], second[2], "registrations was analysed through the lock");
}
