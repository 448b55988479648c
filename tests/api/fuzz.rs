//! Parser fuzzing (issue 11), with proptest rather than `cargo fuzz` (which needs a nightly
//! toolchain this project does not build with): every parser that takes text from outside — the
//! resident ID, names and their pinyin keys, phone and birth fields, the tenant file, periods —
//! is fed arbitrary and near-valid input. None may panic, and what they accept keeps its
//! invariants.
//!
//! CI runs a short pass (`CLOUDHIS_FUZZ_CASES` unset: 1,000 cases a target, the tenant file 200).
//! A longer run: `CLOUDHIS_FUZZ_CASES=200000 cargo test --release --test api fuzz::`.

use cloudhis::patients::names::{NameKey, edit_distance, normalize};
use cloudhis::patients::resident_id::ResidentId;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn cases(default: u32) -> Config {
    let cases = std::env::var("CLOUDHIS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Text that looks like a resident ID: 14 to 19 characters, mostly digits, sometimes `X`,
/// spaces or a stray letter, so that the parser's later checks (region, date, check
/// character) are reached, not only its length check.
fn near_resident_id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![8 => "[0-9]", 1 => "[Xx]", 1 => "[ a-zA-Z一-]"], 14..20)
        .prop_map(|parts| parts.concat())
}

/// The demo tenant file with one random edit: a span deleted and random text put in its place.
fn mutated_tenant_file() -> impl Strategy<Value = String> {
    let text = cloudhis::cli::DEMO_TENANT;
    (0..text.len(), 0usize..80, ".{0,24}").prop_map(move |(at, cut, insert)| {
        let start = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + cut..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        format!("{}{insert}{}", &text[..start], &text[end..])
    })
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn the_resident_id_parser_takes_any_text(raw in prop_oneof![any::<String>(), near_resident_id()]) {
        if let Ok(id) = ResidentId::parse(&raw) {
            // What it accepts is an 18-character ID that parses to itself, born in the past,
            // and whose mask hides the birth date.
            prop_assert_eq!(id.as_str().len(), 18);
            prop_assert_eq!(ResidentId::parse(id.as_str()).map(|i| i.as_str().to_string()), Ok(id.as_str().to_string()));
            prop_assert!(id.birth_date() <= chrono::Utc::now().date_naive());
            prop_assert!(!id.masked().contains(&id.as_str()[6..14]), "{}", id.masked());
        }
    }

    #[test]
    fn the_name_normaliser_takes_any_text(raw in prop_oneof![any::<String>(), "[ 张王李·.a-zA-Z０-９]{0,40}"]) {
        if let Ok(n) = normalize(&raw) {
            // Idempotent, bounded, and its pinyin key is made of what the name holds.
            prop_assert_eq!(normalize(&n), Ok(n.clone()));
            prop_assert!((1..=30).contains(&n.chars().count()));
            let key = NameKey::parse(&raw).unwrap();
            prop_assert_eq!(&key.name, &n);
            prop_assert!(key.initials.chars().count() <= key.joined.chars().count());
            prop_assert!(!key.joined.is_empty());
        } else {
            prop_assert!(NameKey::parse(&raw).is_err());
        }
    }

    #[test]
    fn pinyin_edit_distance_is_a_distance(a in "[a-z]{0,12}|.{0,6}", b in "[a-z]{0,12}|.{0,6}") {
        // It compares bytes (pinyin is ASCII); any text must still not panic.
        let d = edit_distance(&a, &b);
        prop_assert_eq!(d, edit_distance(&b, &a));
        prop_assert!(d <= a.len().max(b.len()));
        prop_assert_eq!(edit_distance(&a, &a), 0);
    }

    #[test]
    fn demographic_fields_take_any_text(raw in any::<String>(), digits in "[0-9+ -]{0,20}") {
        for s in [&raw, &digits] {
            if let Ok(p) = cloudhis::patients::domain::parse_phone(s) {
                prop_assert!(p.chars().all(|c| c.is_ascii_digit()), "{}", p);
                prop_assert!(!cloudhis::patients::domain::mask_phone(&p).contains(&p[p.len().saturating_sub(8)..p.len().saturating_sub(4)]) || p.len() < 8);
            }
            let _ = cloudhis::patients::domain::parse_birth(s);
            let _ = cloudhis::patients::domain::parse_division(s);
            let _ = cloudhis::patients::domain::parse_insurance(s);
            let _ = cloudhis::accounts::domain::valid_period(s);
        }
    }
}

proptest! {
    #![proptest_config(cases(200))]

    #[test]
    fn the_tenant_file_loader_takes_any_edit_of_the_demo_file(text in prop_oneof![mutated_tenant_file(), any::<String>()]) {
        match cloudhis::onboarding::parse("fuzz.toml", &text) {
            Ok(spec) => prop_assert!(!spec.institutions.is_empty()),
            // A refusal names at least one problem, and where it is.
            Err(e) => prop_assert!(!e.problems.is_empty() && e.problems.iter().all(|p| p.starts_with("fuzz.toml"))),
        }
    }
}
