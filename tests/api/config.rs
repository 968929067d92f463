//! `customers-api check-config`, and unknown settings refused at start-up by name.

use std::process::Output;

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut cmd = command(dir.path(), free_port());
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_the_settings_with_secrets_hidden() {
    let out = run(
        &["check-config"],
        &[
            (
                "DATABASE_URL",
                "postgres://app:hunter2-password@db1.example:5432,db2.example:6432/customers?sslmode=verify-full&target_session_attrs=read-write",
            ),
            ("CUSTOMERS_API__EVENTS__NATS_URL", "nats://relay:nats-secret@127.0.0.1:4222"),
            (
                "CUSTOMERS_API__WEBHOOKS__PREVIOUS_SECRETS_KEYS",
                "old-webhooks-key-one-thirty-two-bytes, old-webhooks-key-two-thirty-two-bytes",
            ),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("configuration is valid (profile development)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "database: db1.example:5432, db2.example:6432 (sslmode=verify-full, target_session_attrs=read-write)"
        ),
        "{stdout}"
    );
    // The settings themselves, by name, with the values a user would check.
    for expected in [
        "max_connections: 16",
        "migrate_on_start: true",
        "customers_mib:",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    // Secrets: the URL's password, NATS credentials, the cursor secret and the signing key.
    for secret in [
        "hunter2-password",
        "nats-secret",
        "dev-cursor-secret",
        "dev-signing-secret",
        "old-webhooks-key",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    assert!(stdout.contains("[redacted]"), "{stdout}");
}

#[test]
fn check_config_exits_1_naming_an_invalid_setting() {
    for (env, setting) in [
        (
            ("CUSTOMERS_API__DATABASE__MAX_CONNECTIONS", "0"),
            "database.max_connections",
        ),
        (
            ("DATABASE_URL", "mysql://db/x"),
            "database.url (DATABASE_URL)",
        ),
        (
            ("DATABASE_URL", "postgres://db/x?sslmode=allow"),
            "database.url (DATABASE_URL)",
        ),
        (
            (
                "DATABASE_URL",
                "postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            ),
            "database.url (DATABASE_URL)",
        ),
        (("CUSTOMERS_API__CACHE__CUSTOMERS", "64"), "cache.customers"),
        (
            (
                "CUSTOMERS_API__WEBHOOKS__PREVIOUS_SECRETS_KEYS",
                "an old key of thirty-two bytes or more,too short",
            ),
            "webhooks.previous_secrets_keys",
        ),
        (
            (
                "CUSTOMERS_API__WEBHOOKS__PREVIOUS_SECRETS_KEYS",
                "dev-webhook-secrets-key-do-not-use-in-production-0",
            ),
            "webhooks.previous_secrets_keys",
        ),
    ] {
        let out = run(&["check-config"], &[env]);
        assert_eq!(out.status.code(), Some(1), "{env:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid configuration: {setting}: ")),
            "{env:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{env:?}: nothing printed on stdout");
    }
}

/// An unknown setting stops `serve` before anything starts, by name: the old spelling of a
/// setting, a misspelt variable, and a misspelt key in a configuration file.
#[test]
fn serve_refuses_an_unknown_setting_by_name() {
    for (env, setting, variable) in [
        (
            ("CUSTOMERS_API__CACHE__CUSTOMERS", "64"),
            "cache.customers",
            "CUSTOMERS_API__CACHE__CUSTOMERS",
        ),
        (
            ("CUSTOMERS_API__DATABASE__MAX_CONECTIONS", "5"),
            "database.max_conections",
            "CUSTOMERS_API__DATABASE__MAX_CONECTIONS",
        ),
    ] {
        let out = run(&["serve"], &[env]);
        assert!(!out.status.success(), "{env:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "invalid configuration: {setting}: unknown setting"
            )) && stderr.contains(variable),
            "{env:?}: {stderr}"
        );
    }

    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/development.toml"),
        "[idempotency]\nretension = \"1h\"\n",
    )
    .unwrap();
    let out = command(dir.path(), free_port())
        .arg("serve")
        .output()
        .expect("run the binary");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid configuration: idempotency.retension: unknown setting")
            && stderr.contains("expected one of"),
        "{stderr}"
    );
}
