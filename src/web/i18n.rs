//! The pages' strings, in Fluent resource files: Simplified Chinese first, English second. A page
//! is rendered in one locale only; a message missing from a file fails the tests, not a page.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

pub const ZH: &str = include_str!("i18n/zh-CN.ftl");
pub const EN: &str = include_str!("i18n/en.ftl");

/// The cookie that remembers the reader's choice.
pub const LANG_COOKIE: &str = "cloudhis_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    Zh,
    En,
}

impl Locale {
    /// `zh-CN` unless the reader chose English.
    pub fn parse(s: Option<&str>) -> Locale {
        match s {
            Some("en") => Locale::En,
            _ => Locale::Zh,
        }
    }

    /// The value of `<html lang>` and of the language cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::Zh => "zh-CN",
            Locale::En => "en",
        }
    }

    pub fn other(self) -> Locale {
        match self {
            Locale::Zh => Locale::En,
            Locale::En => Locale::Zh,
        }
    }

    fn bundle(self) -> &'static FluentBundle<FluentResource> {
        static BUNDLES: OnceLock<[FluentBundle<FluentResource>; 2]> = OnceLock::new();
        let all = BUNDLES.get_or_init(|| [bundle("zh-CN", ZH), bundle("en", EN)]);
        match self {
            Locale::Zh => &all[0],
            Locale::En => &all[1],
        }
    }

    /// The message `id`. A missing id shows as itself (and a test keeps that from shipping).
    pub fn t(self, id: &str) -> String {
        self.format(id, None)
    }

    /// The message `id` with named arguments.
    pub fn t_with(self, id: &str, args: &[(&str, String)]) -> String {
        let mut fa = FluentArgs::new();
        for (k, v) in args {
            fa.set(*k, FluentValue::from(v.clone()));
        }
        self.format(id, Some(&fa))
    }

    fn format(self, id: &str, args: Option<&FluentArgs>) -> String {
        let b = self.bundle();
        let Some(pattern) = b.get_message(id).and_then(|m| m.value()) else {
            return id.to_string();
        };
        let mut errors = vec![];
        b.format_pattern(pattern, args, &mut errors).into_owned()
    }
}

fn bundle(tag: &str, source: &'static str) -> FluentBundle<FluentResource> {
    let res = FluentResource::try_new(source.to_string()).expect("the bundled .ftl files parse (tested)");
    let mut b = FluentBundle::new_concurrent(vec![tag.parse().expect("a valid language tag")]);
    // No Unicode isolation marks around arguments: they show up in tests and copy-paste.
    b.set_use_isolating(false);
    b.add_resource(res).expect("no duplicate message ids (tested)");
    b
}

/// The message ids a resource file defines.
pub fn ids(source: &str) -> Vec<String> {
    let res = FluentResource::try_new(source.to_string()).unwrap_or_else(|(_, e)| panic!("ftl errors: {e:?}"));
    res.entries()
        .filter_map(|e| match e {
            fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn both_languages_define_the_same_messages_and_every_kpi() {
        let zh: BTreeSet<String> = ids(ZH).into_iter().collect();
        let en: BTreeSet<String> = ids(EN).into_iter().collect();
        assert_eq!(zh.len(), ids(ZH).len(), "duplicate id in zh-CN.ftl");
        assert_eq!(en.len(), ids(EN).len(), "duplicate id in en.ftl");
        assert_eq!(zh.difference(&en).collect::<Vec<_>>(), Vec::<&String>::new(), "in zh-CN only");
        assert_eq!(en.difference(&zh).collect::<Vec<_>>(), Vec::<&String>::new(), "in en only");
        for (code, ..) in crate::statistics::domain::KPIS {
            assert!(zh.contains(&format!("kpi-{code}")), "no name for KPI {code}");
        }
    }

    #[test]
    fn english_messages_hold_no_chinese_and_chinese_ones_are_chinese() {
        let han = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        // The switch names the other language in that language ("中文" on English pages), marked
        // with its own `lang` attribute in the page.
        for id in ids(EN).into_iter().filter(|id| id != "lang-switch") {
            assert!(!han(&Locale::En.t(&id)), "en message {id} holds Chinese");
        }
        // Every zh-CN message with letters in it has Chinese in it too (codes like "CSV" aside).
        for id in ids(ZH).into_iter().filter(|id| id != "lang-switch") {
            let s = Locale::Zh.t(&id);
            let words = s.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() > 3);
            if words.clone().count() > 0 {
                assert!(han(&s), "zh-CN message {id} reads as English: {s}");
            }
        }
    }

    #[test]
    fn arguments_fill_in_without_isolation_marks() {
        let s = Locale::En.t_with("period-span", &[("from", "2026-01-01".into()), ("to", "2026-03-31".into())]);
        assert_eq!(s, "2026-01-01 to 2026-03-31");
        assert_eq!(Locale::Zh.t("no-such-message"), "no-such-message");
    }
}
