//! Migrations follow expand/contract and never lock a busy table for long
//! (docs/operations.md#deploying-a-new-version): read from `migrations/`, every statement of a
//! migration is checked against the rules below, so that a rewriting `ALTER TABLE` or an index
//! built without `CONCURRENTLY` fails here, before it meets a table of millions of rows while
//! the old version serves.
//!
//! - An index on a table that the migration did not create is built `CONCURRENTLY`, in a file
//!   that starts with `-- no-transaction` (sqlx then runs it outside a transaction, which
//!   `CONCURRENTLY` requires) and holds that one statement.
//! - No `ALTER TABLE` that rewrites the table or scans it under its lock: a column's type
//!   changed, `SET NOT NULL`, a stored generated column, a volatile default, a primary key or
//!   unique constraint built in place, a check or foreign key validated in place (add it
//!   `NOT VALID`, then `VALIDATE CONSTRAINT`, which does not block writes), `SET TABLESPACE`,
//!   `SET LOGGED`/`UNLOGGED`; nor `CLUSTER` or `VACUUM FULL`.
//! - A migration that takes a lock on a table it did not create sets `lock_timeout` first, so
//!   that it waits at most that long behind a long transaction (failing, to be run again)
//!   instead of queueing every reader and writer of the table behind it.
//!
//! The migrations written before these rules (before the first version each rule applies to,
//! and the two listed) are let through: they are applied (sqlx refuses a changed migration),
//! and they ran when the tables were empty or small. Without these exceptions the check names
//! each of their statements (a stored generated column and indexes built in place in
//! migrations 3 and 5, policies created without `lock_timeout` in 3, 4, 8 and 9).

use std::path::Path;

/// The first migration each rule applies to.
const INDEX_AND_REWRITE_RULES_FROM: u64 = 20261206000006;
const LOCK_TIMEOUT_RULE_FROM: u64 = 20261206000010;
/// Migrations that break a rule, with the rule and why they stand.
const LET_THROUGH: &[(u64, &str)] = &[
    // Created policies on customer_events and read all rows (the webhooks' table creation
    // came with them) without lock_timeout; applied before the rule.
    (20261206000008, "lock_timeout"),
    (20261206000009, "lock_timeout"),
];

struct Migration {
    version: u64,
    name: String,
    no_transaction: bool,
    statements: Vec<String>,
}

fn migrations() -> Vec<Migration> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut all: Vec<Migration> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            Migration {
                version: name.split('_').next().unwrap().parse().unwrap(),
                no_transaction: text.starts_with("-- no-transaction"),
                statements: statements(&text),
                name,
            }
        })
        .collect();
    all.sort_by_key(|m| m.version);
    all
}

/// The statements of a migration, without comments, upper-cased, one space between words;
/// a `$$` body (a function's) is kept inside its statement.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_body = false;
    for line in text.lines() {
        let code = if in_body {
            line
        } else {
            line.split("--").next().unwrap()
        };
        for (i, part) in code.split("$$").enumerate() {
            if i > 0 {
                in_body = !in_body;
                current.push_str(" $$ ");
            }
            if in_body {
                current.push_str(part);
                continue;
            }
            let mut pieces = part.split(';').peekable();
            while let Some(piece) = pieces.next() {
                current.push_str(piece);
                if pieces.peek().is_some() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
        current.push(' ');
    }
    out.push(current);
    out.into_iter()
        .map(|s| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_uppercase()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The tables a migration creates.
fn created_tables(m: &Migration) -> Vec<String> {
    m.statements
        .iter()
        .filter_map(|s| s.strip_prefix("CREATE TABLE "))
        .map(|rest| {
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            rest.split([' ', '(']).next().unwrap().to_owned()
        })
        .collect()
}

/// The table a statement locks, for the statements that lock one: `ALTER TABLE t`,
/// `CREATE POLICY p ON t`, `CREATE TRIGGER ... ON t`, `CREATE INDEX ... ON t`, `DROP ... ON t`.
fn locked_table(statement: &str) -> Option<String> {
    let after = |marker: &str| {
        statement.find(marker).map(|at| {
            let rest = &statement[at + marker.len()..];
            let rest = rest.strip_prefix("IF EXISTS ").unwrap_or(rest);
            let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
            rest.split([' ', '(']).next().unwrap().to_owned()
        })
    };
    if statement.starts_with("ALTER TABLE ") {
        after("ALTER TABLE ")
    } else if [
        "CREATE POLICY ",
        "ALTER POLICY ",
        "DROP POLICY ",
        "CREATE TRIGGER ",
        "DROP TRIGGER ",
    ]
    .iter()
    .any(|p| statement.starts_with(p))
        || is_index(statement)
    {
        after(" ON ")
    } else {
        None
    }
}

fn is_index(statement: &str) -> bool {
    statement.starts_with("CREATE INDEX ") || statement.starts_with("CREATE UNIQUE INDEX ")
}

/// What is wrong with an `ALTER TABLE` (or other statement) that rewrites or scans a table under
/// its lock, if anything.
fn rewrites(statement: &str) -> Option<&'static str> {
    let has = |s: &str| statement.contains(s);
    if has("CLUSTER ") || statement.starts_with("CLUSTER") || has("VACUUM FULL") {
        return Some("CLUSTER and VACUUM FULL rewrite the table under an exclusive lock");
    }
    if !statement.starts_with("ALTER TABLE ") {
        return None;
    }
    if has(" TYPE ") && has("ALTER COLUMN") {
        return Some("a column's type changed rewrites the table");
    }
    if has("SET NOT NULL") {
        return Some("SET NOT NULL scans the table under its lock: add a CHECK (c IS NOT NULL) NOT VALID and VALIDATE it");
    }
    if has("GENERATED ALWAYS AS") && has("STORED") {
        return Some("a stored generated column rewrites the table");
    }
    if has("ADD COLUMN")
        && has("DEFAULT")
        && [
            "CLOCK_TIMESTAMP(",
            "RANDOM(",
            "GEN_RANDOM_UUID(",
            "NEXTVAL(",
            "TIMEOFDAY(",
        ]
        .iter()
        .any(|f| has(f))
    {
        return Some("a volatile default rewrites the table");
    }
    if (has("PRIMARY KEY") || has(" UNIQUE")) && has(" ADD ") && !has("USING INDEX") {
        return Some("a primary key or unique constraint built in place: build its index CONCURRENTLY, then ADD ... USING INDEX");
    }
    if (has(" CHECK ") || has(" CHECK(") || has("FOREIGN KEY")) && has(" ADD ") && !has("NOT VALID")
    {
        return Some(
            "a check or foreign key validated in place: add it NOT VALID, then VALIDATE CONSTRAINT",
        );
    }
    if has("SET TABLESPACE") || has("SET LOGGED") || has("SET UNLOGGED") {
        return Some("SET TABLESPACE / LOGGED / UNLOGGED rewrites the table");
    }
    None
}

fn let_through(m: &Migration, rule: &str) -> bool {
    LET_THROUGH.contains(&(m.version, rule))
}

#[test]
fn migrations_build_indexes_concurrently_rewrite_nothing_and_bound_their_lock_waits() {
    let mut broken = Vec::new();
    for m in migrations() {
        let created = created_tables(&m);
        let existing =
            |table: &Option<String>| table.as_ref().is_some_and(|t| !created.contains(t));
        if m.version >= INDEX_AND_REWRITE_RULES_FROM && !let_through(&m, "index") {
            for s in m.statements.iter().filter(|s| is_index(s)) {
                if !existing(&locked_table(s)) {
                    continue;
                }
                if !s.contains(" CONCURRENTLY ") {
                    broken.push(format!(
                        "{}: an index on an existing table built without CONCURRENTLY: {s}",
                        m.name
                    ));
                } else if !m.no_transaction || m.statements.len() != 1 {
                    broken.push(format!("{}: CREATE INDEX CONCURRENTLY needs a file of its own starting with `-- no-transaction`", m.name));
                }
            }
        }
        if m.version >= INDEX_AND_REWRITE_RULES_FROM && !let_through(&m, "rewrite") {
            for s in &m.statements {
                if let Some(why) = rewrites(s) {
                    broken.push(format!("{}: {why}: {s}", m.name));
                }
            }
        }
        if m.version >= LOCK_TIMEOUT_RULE_FROM && !let_through(&m, "lock_timeout") {
            let mut bounded = false;
            for s in &m.statements {
                if s.starts_with("SET LOCK_TIMEOUT") || s.starts_with("SET LOCAL LOCK_TIMEOUT") {
                    bounded = true;
                }
                let concurrent_index = is_index(s) && s.contains(" CONCURRENTLY ");
                if existing(&locked_table(s)) && !concurrent_index && !bounded {
                    broken.push(format!(
                        "{}: locks an existing table without setting lock_timeout first: {s}",
                        m.name
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The rules catch what they are for (a check that cannot fail would prove nothing).
#[test]
fn the_migration_rules_refuse_what_locks_a_table_for_long() {
    let refused = [
        "ALTER TABLE customers ALTER COLUMN email TYPE varchar(300)",
        "ALTER TABLE customers ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE customers ADD COLUMN n text GENERATED ALWAYS AS (lower(email)) STORED",
        "ALTER TABLE customers ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid()",
        "ALTER TABLE customers ADD CONSTRAINT one UNIQUE (email)",
        "ALTER TABLE customer_events ADD CONSTRAINT positive CHECK (version > 0)",
        "VACUUM FULL customer_events",
    ];
    for s in refused {
        let s = statements(s).remove(0);
        assert!(rewrites(&s).is_some(), "not refused: {s}");
    }
    let allowed = [
        "ALTER TABLE customer_events ADD COLUMN traceparent text",
        "ALTER TABLE customers ADD COLUMN event_xid bigint NOT NULL DEFAULT 0",
        "ALTER TABLE customer_events ADD CONSTRAINT positive CHECK (version > 0) NOT VALID",
        "ALTER TABLE customer_events VALIDATE CONSTRAINT positive",
        "ALTER TABLE customers ADD CONSTRAINT one UNIQUE USING INDEX customers_one",
    ];
    for s in allowed {
        let s = statements(s).remove(0);
        assert_eq!(rewrites(&s), None, "refused: {s}");
    }
    assert_eq!(
        locked_table(&statements("CREATE INDEX customers_x ON customers (email)").remove(0)),
        Some("CUSTOMERS".to_owned())
    );
    let split = statements(
        "-- a comment; with a semicolon\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT 2;",
    );
    assert_eq!(split.len(), 2, "{split:?}");
}
