//! The direction of the house: every module of `src/` sits on a layer, and a module may use only
//! the modules on layers below its own. This test reads the source and names the file and line
//! of every `crate::…` path that points sideways or upwards. `LAYERS` is the one list of allowed
//! edges; `docs/architecture.md` shows the same order (checked below).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Lowest first. Modules on one line are peers: they may not use each other.
pub const LAYERS: &[&[&str]] = &[
    &["platform"],
    &["tenancy"],
    &["identity"],
    &["audit", "patients"],
    &["clinical"],
    &["pharmacy"],
    &["billing"],
    &["visit"],
    &["referrals", "followups"],
    &["accounts", "statistics"],
    &["escalation", "onboarding"],
    &["web"],
    &["api"],
    &["startup"],
    &["demo"],
    &["cli"],
];

/// A `crate::` path that breaks the direction.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}` may not use `{}` (not below it in LAYERS)", self.file, self.line, self.from, self.to)
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every top-level module a line of Rust names through `crate::` (or `$crate::` in a macro),
/// including the members of `crate::{a, b::c}` groups. Comments are not code.
fn modules_named(line: &str) -> Vec<String> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // `crate::string_enum!` is a macro exported at the crate root (from platform).
            if !name.is_empty() && !after[name.len()..].starts_with('!') {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

/// The violations in one file of module `from`.
pub fn check_source(file: &str, from: &str, text: &str) -> Vec<Violation> {
    let Some(own) = layer_of(from) else {
        return vec![Violation {
            file: file.into(),
            line: 1,
            from: from.into(),
            to: "(a module not in LAYERS)".into(),
        }];
    };
    let mut out = Vec::new();
    // A `use crate::{…}` group may span lines: join it before reading.
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let (line_no, line) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push(' ');
                acc.push_str(raw);
                (start, acc)
            }
            None => (n + 1, raw.to_string()),
        };
        if line.contains("crate::{") && !line.contains('}') {
            pending = Some((line_no, line));
            continue;
        }
        for to in modules_named(&line) {
            if to == from {
                continue;
            }
            let allowed = layer_of(&to).is_some_and(|l| l < own);
            if !allowed {
                out.push(Violation { file: file.into(), line: line_no, from: from.into(), to });
            }
        }
    }
    out
}

pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every violation under `src/`.
pub fn check_tree(src: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue; // the crate root declares the modules; main only calls cli
        }
        let text = std::fs::read_to_string(&path).unwrap();
        out.extend(check_source(&format!("src/{}", rel.display()), &module, &text));
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let violations = check_tree(&src_dir());
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(list.is_empty(), "{} forbidden import(s):\n{}", list.len(), list.join("\n"));
}

#[test]
fn every_module_of_src_is_on_a_layer_and_no_layer_names_a_missing_one() {
    let mut modules: Vec<String> = std::fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    modules.sort();
    let mut listed: Vec<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| m.to_string())).collect();
    listed.sort();
    assert_eq!(modules, listed, "LAYERS must name every module of src/ once");
}

#[test]
fn the_checker_catches_an_upward_a_sideways_and_a_grouped_import() {
    let upward = check_source("src/tenancy/service.rs", "tenancy", "use crate::billing::service::charge;\n");
    assert_eq!(
        upward,
        vec![Violation {
            file: "src/tenancy/service.rs".into(),
            line: 1,
            from: "tenancy".into(),
            to: "billing".into()
        }]
    );
    let sideways = check_source("src/followups/x.rs", "followups", "fn f() { crate::referrals::service::x(); }");
    assert_eq!(sideways.len(), 1, "peers may not use each other: {sideways:?}");
    let grouped =
        check_source("src/clinical/x.rs", "clinical", "use crate::{\n    patients::x,\n    billing::y,\n};\n");
    assert_eq!(grouped.iter().map(|v| (v.line, v.to.as_str())).collect::<Vec<_>>(), vec![(1, "billing")]);
    let in_macro = check_source("src/platform/x.rs", "platform", "$crate::web::Page::load()");
    assert_eq!(in_macro.len(), 1);
    assert!(
        check_source("src/billing/x.rs", "billing", "use crate::pharmacy::x; // crate::web in a comment\n").is_empty()
    );
}

#[test]
fn docs_show_the_same_layers() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let order: Vec<String> = LAYERS.iter().map(|l| l.join(", ")).collect();
    let expected = format!("```text\n{}\n```", order.join("\n"));
    assert!(doc.contains(&expected), "docs/architecture.md must show the layers, lowest first, as:\n{expected}");
    let mut seen = HashMap::new();
    for (i, l) in LAYERS.iter().enumerate() {
        for m in *l {
            assert!(seen.insert(*m, i).is_none(), "{m} is on two layers");
        }
    }
}

/// The table of every event type and the consumers that apply it, as `docs/architecture.md`
/// shows it.
fn event_table() -> String {
    let handlers = cloudhis::startup::handlers();
    let mut out = String::from("| event | published by | consumers |\n|---|---|---|\n");
    for (context, event_type) in cloudhis::startup::event_types() {
        let consumers: Vec<String> =
            handlers.iter().filter(|h| h.events().contains(&event_type)).map(|h| format!("`{}`", h.name())).collect();
        let consumers =
            if consumers.is_empty() { "(none: an audit trail of the index)".into() } else { consumers.join(", ") };
        out.push_str(&format!("| `{event_type}` | {context} | {consumers} |\n"));
    }
    out
}

#[test]
fn every_event_type_is_declared_once_and_every_subscription_names_one() {
    let catalog: Vec<&str> = cloudhis::startup::event_types().into_iter().map(|(_, t)| t).collect();
    let mut unique = catalog.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), catalog.len(), "an event type is listed twice: {catalog:?}");
    for h in cloudhis::startup::handlers() {
        for t in h.events() {
            assert!(catalog.contains(&t), "consumer {} subscribes to {t}, which nothing publishes", h.name());
        }
    }
    // Every `<context>.<event>` literal of a context's events.rs is in the catalog.
    for context in ["patients", "clinical", "pharmacy", "billing", "referrals", "followups"] {
        let text = std::fs::read_to_string(src_dir().join(context).join("events.rs")).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            if literal.starts_with(&format!("{context}.")) && !literal.contains(' ') {
                assert!(
                    catalog.contains(&literal),
                    "{context}/events.rs declares {literal}, missing from startup::event_types"
                );
            }
        }
    }
    // No context emits an event by a string: `tx.emit` takes a typed event.
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("tx.emit(\n        Some(ctx.user),\n        \""),
            "{} emits an untyped event",
            f.display()
        );
    }
}

#[test]
fn docs_list_every_event_with_its_consumers() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let table = event_table();
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() && !doc.contains(&table) {
        panic!("paste this table into docs/architecture.md (Events):\n{table}");
    }
    assert!(doc.contains(&table), "docs/architecture.md must list the events and their consumers as:\n{table}");
}

/// Functions of `src/` longer than `max` lines, as (file, line, name, length), unless the line
/// above says why (`// Long: …`).
fn long_functions(max: usize) -> Vec<(String, usize, String, usize)> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let is_fn = ["fn ", "pub fn ", "async fn ", "pub async fn ", "pub(crate) fn ", "pub(crate) async fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            let close = " ".repeat(indent) + "}";
            let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else { continue };
            let length = end + 2;
            let excused = i > 0 && lines[i - 1].trim_start().starts_with("// Long:");
            if length > max && !excused {
                let name: String = trimmed
                    .split("fn ")
                    .nth(1)
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((f.strip_prefix(src_dir()).unwrap().display().to_string(), i + 1, name, length));
            }
        }
    }
    out
}

#[test]
fn no_function_of_src_is_longer_than_a_hundred_lines() {
    let long = long_functions(100);
    assert!(
        long.is_empty(),
        "split these into steps that read top to bottom (or say why above them with `// Long:`): {long:?}"
    );
}
