//! Every statement about one customer (or one idempotency key) reads its table's primary key,
//! and a bound on the version (a history page after a cursor) bounds that scan rather than
//! filtering its rows, whatever the statistics say and under generic plans too: checked with EXPLAIN on 20,000 customers of one tenant, with
//! their events and keys, that were never analysed (autovacuum off), as a bulk load or a restore
//! leaves them. The statements are the service's own, read from the prepared query data in
//! `.sqlx/`, so a new statement is checked without being listed here.

use serde_json::Value;
use sqlx::Executor;

use crate::support::*;

/// The statements that name one row by its key.
fn statements_by_key() -> Vec<(String, Vec<String>)> {
    all_statements()
        .into_iter()
        .filter(|(query, _)| names_one_row(query))
        .collect()
}

/// Whether a statement names a row by its key (`id = $n`, `customer_id = $n`, `key = $n`; not
/// `org_id = $n`, which every statement has).
fn names_one_row(query: &str) -> bool {
    [" id = $", ".id = $", " customer_id = $", " key = $"]
        .iter()
        .any(|pattern| query.contains(pattern))
}

/// A value of each parameter type, as SQL.
fn argument(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "Text" => ("text", "'{}'"), // also a valid JSON text (an event's body is one)
        "Int8" => ("int8", "1"),
        "Int2" => ("int2", "200"),
        "Float8" => ("float8", "86400"),
        "Bytea" => ("bytea", "'\\x00'"),
        "Jsonb" => ("jsonb", "'{}'"),
        "Timestamptz" => ("timestamptz", "now()"),
        "Bool" => ("bool", "true"),
        "Int4" => ("int4", "1"),
        "TextArray" => ("text[]", "'{}'"),
        "Int4Array" => ("int4[]", "'{}'"),
        "Int8Array" => ("int8[]", "'{}'"),
        "Float8Array" => ("float8[]", "'{}'"),
        "TimestamptzArray" => ("timestamptz[]", "'{}'"),
        other => panic!("no example value for a parameter of type {other}"),
    }
}

/// Every index and sequential scan in a plan: (node type, relation, index).
fn scans(plan: &Value, out: &mut Vec<(String, String, String)>) {
    let node = plan["Node Type"].as_str().unwrap_or_default();
    if node.contains("Scan") && !node.starts_with("CTE") && node != "Result" {
        out.push((
            node.to_owned(),
            plan["Relation Name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            plan["Index Name"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, out);
    }
}

#[tokio::test]
async fn every_statement_by_key_reads_the_primary_key_without_statistics() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "ALTER TABLE customers SET (autovacuum_enabled = false);
         ALTER TABLE customer_events SET (autovacuum_enabled = false);
         ALTER TABLE idempotency_keys SET (autovacuum_enabled = false);
         INSERT INTO customers (org_id, mode, id, created_at, updated_at, policy, version)
         SELECT 'org_bench', 'test', 'cus_' || lpad(upper(to_hex(g)), 26, '0'),
                now() - g * interval '1 second', now(), '{\"limits\":{\"perDay\":5000}}', 2
           FROM generate_series(1, 20000) g;
         INSERT INTO customer_events (org_id, mode, customer_id, version, id, type, occurred_at,
                                      feed_xid, body)
         SELECT 'org_bench', 'test', 'cus_' || lpad(upper(to_hex(g)), 26, '0'), v,
                'evt_' || lpad(upper(to_hex(g * 2 + v)), 26, '0'), 'customer.updated', now(),
                g * 2 + v, '{}'
           FROM generate_series(1, 20000) g, generate_series(1, 2) v;
         INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, expires_at)
         SELECT 'org_bench', 'test', 'key-' || g, sha256(g::text::bytea), now() + interval '1 day'
           FROM generate_series(1, 20000) g;",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let analysed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats WHERE tablename IN ('customers', 'customer_events')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(analysed, 0, "the tables have no statistics");

    let statements = statements_by_key();
    assert!(
        statements.len() >= 8,
        "found {} statements",
        statements.len()
    );
    // A connection as the service makes them: its role, enable_seqscan = off, jit = off.
    let mut conn = app.service_pool().acquire().await.unwrap();
    let mut checked = 0;
    for (i, (query, types)) in statements.iter().enumerate() {
        let (sql_types, values): (Vec<_>, Vec<_>) = types.iter().map(|t| argument(t)).unzip();
        conn.execute(format!("PREPARE s{i}({}) AS {query}", sql_types.join(", ")).as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}: {query}"));
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = explain(&mut conn, &format!("s{i}"), mode, &values).await;
            let mut found = Vec::new();
            scans(&plan[0]["Plan"], &mut found);
            let mut unbounded = Vec::new();
            filters_of(&plan[0]["Plan"], "customer_events", &mut unbounded);
            assert!(
                unbounded.iter().all(|filter| !filter.contains("version")),
                "{mode}: a bound on the version filters rows instead of bounding the scan: \
                 {unbounded:?} in\n{query}\n{plan:#}"
            );
            if query.contains("occurred_at > '-infinity'") {
                assert!(
                    found
                        .iter()
                        .any(|(_, _, index)| index == "customer_events_as_of"),
                    "{mode}: as-of reads its index: {plan:#}"
                );
            }
            for (node, relation, index) in &found {
                let table = if relation.is_empty() {
                    index.rsplit_once('_').map_or("", |(t, _)| t).to_owned()
                } else {
                    relation.clone()
                };
                if !["customers", "customer_events", "idempotency_keys"]
                    .iter()
                    .any(|t| index.starts_with(t) || relation == t)
                {
                    continue;
                }
                // The as-of statement's own index, which only it can use (migration 7).
                let own =
                    query.contains("occurred_at > '-infinity'") && index == "customer_events_as_of";
                assert!(
                    own || index == &format!("{table}_pkey"),
                    "{mode}: a {node} of {relation} {index} in\n{query}\n{plan:#}"
                );
            }
            checked += 1;
        }
    }
    println!(
        "{} statements by key, {checked} plans: each on its primary key",
        statements.len()
    );

    // A tenant's feed reads the tenant's own feed index in order: not another tenant's events,
    // not a sort of the tenant's whole backlog; filtered by type, the index of its type.
    for (name, marker, index) in [
        ("feed", "AND seq > 0", "customer_events_feed"),
        (
            "feed_by_type",
            "AND type = $3",
            "customer_events_feed_by_type",
        ),
    ] {
        let feed = all_statements()
            .into_iter()
            .find(|(query, _)| {
                query.contains("ORDER BY feed_xid, seq")
                    && query.contains("org_id = $1")
                    && query.contains(marker)
            })
            .unwrap_or_else(|| panic!("the {name} statement"));
        let (sql_types, values): (Vec<_>, Vec<_>) = feed.1.iter().map(|t| argument(t)).unzip();
        conn.execute(format!("PREPARE {name}({}) AS {}", sql_types.join(", "), feed.0).as_str())
            .await
            .unwrap();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = explain(&mut conn, name, mode, &values).await;
            let mut found = Vec::new();
            scans(&plan[0]["Plan"], &mut found);
            let indexes: Vec<&str> = found
                .iter()
                .map(|(_, _, index)| index.as_str())
                .filter(|index| !index.is_empty())
                .collect();
            assert_eq!(indexes, [index], "{name}, {mode}: {plan:#}");
            assert!(
                !plan.to_string().contains("\"Sort\""),
                "{name}, {mode}: no sort: {plan:#}"
            );
        }
    }
}

/// The senders' statements that name deliveries by key, and the foreign-key check of each
/// attempt recorded (`webhook_attempts` -> `webhook_deliveries`, which PostgreSQL plans once per
/// connection), read `webhook_deliveries` by its primary key (the claim also walks its due
/// index), never by an index led by `(org_id, mode)` that the planner costs the same on
/// statistics taken while the table was empty: as the fan-out bench found with the delivery
/// log's index (docs/performance.md), which is now partial on a condition only the log's
/// statements state (migration 14).
#[tokio::test]
async fn webhook_statements_by_key_read_the_primary_key_on_statistics_of_an_empty_table() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "ALTER TABLE webhook_deliveries SET (autovacuum_enabled = false);
         ALTER TABLE webhook_attempts SET (autovacuum_enabled = false);
         ANALYZE webhook_deliveries, webhook_attempts;
         INSERT INTO webhooks (org_id, mode, id, url, created_at, updated_at)
         SELECT 'org_bench', 'test', 'whk_' || lpad(g::text, 26, '0'), 'http://127.0.0.1/',
                now(), now()
           FROM generate_series(1, 20) g;
         INSERT INTO webhook_deliveries (org_id, mode, id, webhook_id, event_id, event_type,
                                         customer_id, event_version, status, next_attempt_at,
                                         event_recorded_at, created_at)
         SELECT 'org_bench', 'test', 'dlv_' || lpad(upper(to_hex(g)), 26, '0'),
                'whk_' || lpad((g % 20 + 1)::text, 26, '0'), 'evt_' || g, 'customer.updated',
                'cus_' || g, 1, CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'succeeded' END,
                CASE WHEN g % 2 = 0 THEN now() END, now(), now() - g * interval '1 second'
           FROM generate_series(1, 20000) g;",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let statements = all_statements();
    let find = |what: &str, markers: &[&str]| {
        statements
            .iter()
            .find(|(query, _)| markers.iter().all(|m| query.contains(m)))
            .unwrap_or_else(|| panic!("the {what} statement"))
            .clone()
    };
    let mut cases = vec![
        (
            "record",
            find(
                "record",
                &[
                    "UPDATE webhook_deliveries w",
                    "INSERT INTO webhook_attempts",
                ],
            ),
        ),
        (
            "claim",
            find(
                "claim",
                &["UPDATE webhook_deliveries d", "FOR UPDATE SKIP LOCKED"],
            ),
        ),
        (
            // As PostgreSQL's referential integrity check writes it (ri_triggers.c).
            "foreign_key",
            (
                r#"SELECT 1 FROM ONLY "public"."webhook_deliveries" x
                    WHERE "org_id" OPERATOR(pg_catalog.=) $1
                      AND "mode" OPERATOR(pg_catalog.=) $2
                      AND "id" OPERATOR(pg_catalog.=) $3 FOR KEY SHARE OF x"#
                    .to_owned(),
                vec!["Text".to_owned(); 3],
            ),
        ),
    ];
    // The routes' statements about one delivery.
    for (query, types) in statements_by_key() {
        if query.contains("webhook_deliveries") && query.contains(" id = $3") {
            cases.push(("by_key", (query, types)));
        }
    }
    assert!(cases.len() >= 5, "{} statements", cases.len());
    // The table's owner (the foreign-key check runs as it, and the senders' statements pass
    // row-level security across tenants), planning as the service's connections do.
    let mut conn = app.db.acquire().await.unwrap();
    conn.execute("SET enable_seqscan = off; SET jit = off")
        .await
        .unwrap();
    for (i, (name, (query, types))) in cases.iter().enumerate() {
        let (sql_types, values): (Vec<_>, Vec<_>) = types.iter().map(|t| argument(t)).unzip();
        conn.execute(format!("PREPARE w{i}({}) AS {query}", sql_types.join(", ")).as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}: {query}"));
        // The claim's transaction turns bitmap scans and sorts off (see outbox::claim).
        let claim = *name == "claim";
        conn.execute(format!("SET enable_bitmapscan = {}", !claim).as_str())
            .await
            .unwrap();
        conn.execute(format!("SET enable_sort = {}", !claim).as_str())
            .await
            .unwrap();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = explain(&mut conn, &format!("w{i}"), mode, &values).await;
            let mut found = Vec::new();
            scans(&plan[0]["Plan"], &mut found);
            let deliveries: Vec<_> = found
                .iter()
                .filter(|(_, relation, index)| {
                    relation == "webhook_deliveries" || index.starts_with("webhook_deliveries")
                })
                .collect();
            assert!(!deliveries.is_empty(), "{name}, {mode}: {plan:#}");
            for (node, _, index) in deliveries {
                let allowed = index == "webhook_deliveries_pkey"
                    || (claim && index == "webhook_deliveries_due");
                assert!(
                    allowed,
                    "{name}, {mode}: a {node} of webhook_deliveries {index} in\n{query}\n{plan:#}"
                );
            }
        }
    }
}

/// The plan of the prepared statement `name` with `values`, under `plan_cache_mode = mode`.
async fn explain(conn: &mut sqlx::PgConnection, name: &str, mode: &str, values: &[&str]) -> Value {
    conn.execute(format!("SET plan_cache_mode = {mode}").as_str())
        .await
        .unwrap();
    sqlx::query_scalar(&format!(
        "EXPLAIN (FORMAT JSON) EXECUTE {name}({})",
        values.join(", ")
    ))
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The filters (conditions checked on each row read, not bounds of the scan) of every scan of
/// `relation` in a plan.
fn filters_of(plan: &Value, relation: &str, out: &mut Vec<String>) {
    if plan["Relation Name"].as_str() == Some(relation) {
        if let Some(filter) = plan["Filter"].as_str() {
            out.push(filter.to_owned());
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        filters_of(child, relation, out);
    }
}

/// Every statement of the prepared query data, with its parameter types.
fn all_statements() -> Vec<(String, Vec<String>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx");
    std::fs::read_dir(dir)
        .expect(".sqlx/ is there")
        .map(|entry| {
            let data: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            let types = data["describe"]["parameters"]["Left"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect();
            (data["query"].as_str().unwrap().to_owned(), types)
        })
        .collect()
}

/// The as-of probe is planned once per connection and then reused (a generic plan), also for
/// a customer whose history is a tenth of its tenant's: PostgreSQL keeps re-planning a prepared
/// statement on every execution when its generic plan looks dearer than the custom ones, and
/// for the as-of read that planning cost three times the execution (the bench's `as_of` at a
/// third of the throughput on a tenant with 200,000 events). Checked on the service's own
/// statement, executed as the service does on a connection of its role, with the shape of the
/// bench's history: one customer with 20,000 versions among 300, an instant just after its
/// creation.
#[tokio::test]
async fn the_as_of_probe_is_planned_once_and_reused_on_a_long_history() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "INSERT INTO customer_events (org_id, mode, customer_id, version, id, type, occurred_at,
                                      feed_xid, body)
         SELECT 'org_bench', 'test', 'cus_' || lpad(c::text, 26, '0'), v,
                'evt_' || lpad(upper(to_hex(c * 100000 + v)), 26, '0'),
                CASE WHEN v = 1 THEN 'customer.created' ELSE 'customer.updated' END,
                timestamptz '2026-01-01T00:00:00Z' + c * interval '1 day'
                  + (v - 1) * interval '1 second',
                3, json_build_object('v', v, 'pad', repeat('x', 700))
           FROM generate_series(1, 300) c,
                generate_series(1, CASE WHEN c = 1 THEN 20000 ELSE 600 END) v;
         ANALYZE customer_events;",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (query, types) = all_statements()
        .into_iter()
        .find(|(query, _)| query.contains("occurred_at > '-infinity'"))
        .expect("the as-of statement");
    assert_eq!(types, ["Text", "Text", "Text", "Timestamptz"], "{query}");
    let mut conn = app.service_pool().acquire().await.unwrap();
    conn.execute(format!("PREPARE as_of(text, text, text, timestamptz) AS {query}").as_str())
        .await
        .unwrap();
    for _ in 0..10 {
        let version: i64 = sqlx::query_scalar(
            "EXECUTE as_of('org_bench', 'test', 'cus_00000000000000000000000001', \
             '2026-01-02T00:00:00.5Z')",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(version, 1, "the version at that instant");
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'as_of'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(
        custom <= 5 && generic >= 5,
        "planned anew on every execution: {custom} custom plans, {generic} generic, for\n{query}"
    );
}

/// The first page of a listing on a connection just opened reads the page from its index, not
/// the whole tenant, and checks the tenant policy once. The policies compare with `current_setting('app.tenant', true)`, which the
/// planner evaluates to estimate a custom plan: on a session that never bound a tenant it is NULL,
/// the policy then looks like it matches no row, and the plan read every customer of the tenant
/// into a sort (22 ms for 20,000 customers, growing with the tenant) once per new connection. The
/// pool's connections start with the binding defined as '' (which matches no row), as it is after
/// any statement has bound and released it.
#[tokio::test]
async fn a_new_connections_first_list_page_reads_its_index_and_checks_the_policy_once() {
    let app = spawn_app().await;
    sqlx::raw_sql(
        "INSERT INTO customers (org_id, mode, id, created_at, updated_at)
         SELECT 'org_bench', 'test', 'cus_' || lpad(upper(to_hex(g)), 26, '0'),
                now() - g * interval '1 second', now()
           FROM generate_series(1, 20000) g;
         ANALYZE customers;",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // The default listing as customers::repo::list builds it, with its values.
    let page = "SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, \
                       metadata, version, created_at, updated_at \
                  FROM customers WHERE org_id = 'org_bench' AND mode = 'test' \
                   AND (SELECT set_config('app.tenant', 'test/org_bench', true)) IS NOT NULL \
                   AND status <> 'deleted' ORDER BY created_at DESC, id DESC LIMIT 50";
    let mut conn = app.service_pool().acquire().await.unwrap();
    let plan: Value = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {page}"))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let mut found = Vec::new();
    scans(&plan[0]["Plan"], &mut found);
    assert_eq!(
        found,
        [(
            "Index Scan".to_owned(),
            "customers".to_owned(),
            "customers_list_live".to_owned()
        )],
        "{plan:#}"
    );
    fn rows_read(plan: &Value) -> i64 {
        let own = match plan["Node Type"].as_str() {
            Some(node) if node.contains("Scan") => plan["Actual Rows"].as_i64().unwrap_or(0),
            _ => 0,
        };
        own + plan["Plans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(rows_read)
            .sum::<i64>()
    }
    assert_eq!(rows_read(&plan[0]["Plan"]), 50, "{plan:#}");
    // The tenant policy (migration 16) is checked once for the statement, not on every row.
    let mut per_row = Vec::new();
    filters_of(&plan[0]["Plan"], "customers", &mut per_row);
    assert!(
        per_row.iter().all(|f| !f.contains("app.tenant")),
        "the policy is checked per row: {per_row:?}"
    );
}
