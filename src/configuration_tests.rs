//! Tests of `configuration.rs` (a file of their own to keep that one readable): unknown
//! settings are refused by name, in files and in the environment.

use super::*;

fn refused(extra_toml: &str, env: &[(&str, &str)]) -> ConfigError {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match Settings::load_layers(Some(extra_toml), Some(env)) {
        Ok(_) => panic!("accepted: {extra_toml}"),
        Err(e) => e,
    }
}

/// Every section of config/default.toml (so a section added later is covered too), and the
/// top level, refuses a key it does not know, by name.
#[test]
fn an_unknown_setting_in_any_section_is_refused() {
    let default: toml_sections::Sections = toml_sections::sections(DEFAULT_TOML);
    assert!(default.len() >= 9, "{default:?}");
    for section in default {
        let e = refused(&format!("[{section}]\nno_such_setting = 1\n"), &[]);
        assert_eq!(e.setting, format!("{section}.no_such_setting"), "{e}");
        assert!(e.reason.contains("unknown setting"), "{e}");
    }
    let e = refused("no_such_section = 1\n", &[]);
    assert_eq!(e.setting, "no_such_section", "{e}");
}

#[test]
fn an_unknown_environment_variable_is_refused_by_name() {
    let e = refused("", &[("CUSTOMERS_API__CACHE__CUSTOMERS", "64")]);
    assert_eq!(e.setting, "cache.customers", "{e}");
    assert!(
        e.to_string().contains("CUSTOMERS_API__CACHE__CUSTOMERS")
            && e.to_string().contains("customers_mib"),
        "{e}"
    );
    let e = refused("", &[("CUSTOMERS_API__DATABASE__MAX_CONECTIONS", "5")]);
    assert_eq!(e.setting, "database.max_conections", "{e}");
    // A known one is taken.
    let settings = Settings::load_layers(
        None,
        Some(
            [(
                "CUSTOMERS_API__CACHE__CUSTOMERS_MIB".to_owned(),
                "3".to_owned(),
            )]
            .into(),
        ),
    )
    .unwrap();
    assert_eq!(settings.cache.customers_mib, 3);
}

#[test]
fn an_unknown_key_of_a_signing_key_is_refused() {
    let e = refused(
        "[[auth.keys]]\nkid = \"k\"\nalg = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\nsecert = \"x\"\n",
        &[],
    );
    assert!(e.setting.ends_with("secert"), "{e}");
}

/// The table names of a TOML text (`[a]`, `[a.b]`, `[[a.b]]` as `a.b`), without a TOML
/// parser: the file is ours and simple.
mod toml_sections {
    pub type Sections = Vec<String>;
    pub fn sections(text: &str) -> Sections {
        let mut out: Sections = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .map(|n| n.trim_start_matches('[').trim())
            {
                if !name.is_empty() && !out.iter().any(|o| o == name) && !line.starts_with("[[") {
                    out.push(name.to_owned());
                }
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct Schedule {
    #[serde(deserialize_with = "durations")]
    steps: Vec<Duration>,
}

/// `webhooks.retry_schedule`: a TOML array, or a comma-separated string from the
/// environment.
#[test]
fn a_schedule_is_a_list_or_a_comma_separated_string() {
    let secs = |s: &[u64]| {
        s.iter()
            .map(|&n| Duration::from_secs(n))
            .collect::<Vec<_>>()
    };
    let list: Schedule = serde_json::from_str(r#"{"steps": ["5s", "5m"]}"#).unwrap();
    assert_eq!(list.steps, secs(&[5, 300]));
    let text: Schedule = serde_json::from_str(r#"{"steps": "1s, 1s,2s"}"#).unwrap();
    assert_eq!(text.steps, secs(&[1, 1, 2]));
    let empty: Schedule = serde_json::from_str(r#"{"steps": ""}"#).unwrap();
    assert!(empty.steps.is_empty());
    assert!(serde_json::from_str::<Schedule>(r#"{"steps": "1s,soon"}"#).is_err());
}
