//! `database.tenant_max_connections` and `database.tenant_queue`: a tenant whose requests hold
//! its share of the pool queues (bounded) while other tenants are served; a request that finds
//! its tenant's queue full answers 429 `rate_limited` with `Retry-After`, having written
//! nothing; and the default lets a lone tenant's ordinary load through without a refusal.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::until_waiting;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_bound_queues_then_is_refused_while_another_is_served() {
    let app = spawn_app_with(|s| {
        s.rate_limit.enabled = false;
        s.database.max_connections = 4;
        s.database.tenant_max_connections = 2;
        s.database.tenant_queue = 2;
        s.database.acquire_timeout = Duration::from_secs(5);
        s.database.statement_timeout = Duration::from_secs(10);
    })
    .await;
    let busy = app.create_id(json!({})).await;
    let other_token = token("org_other", "test", ADMIN);
    let other = send(
        app.request_as(Method::POST, "/v1/customers", &other_token)
            .json(&json!({})),
    )
    .await
    .id();

    // The busy tenant's customer is locked: its PATCHes wait, each holding a connection.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE")
        .bind(&busy)
        .execute(&mut *lock)
        .await
        .unwrap();
    let patch = |n: i32| {
        let request = app
            .request(Method::PATCH, &format!("/v1/customers/{busy}"))
            .json(&json!({"metadata": {"n": n}}));
        tokio::spawn(async move { send(request).await })
    };
    let mut holding = vec![patch(1), patch(2)];
    until_waiting(&app.db, "Lock", 2).await;
    // Two more queue for the tenant's connections (its queue holds two)...
    holding.push(patch(3));
    holding.push(patch(4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and the next is refused at once, having done nothing.
    let started = Instant::now();
    let refused = send(
        app.request(Method::PATCH, &format!("/v1/customers/{busy}"))
            .json(&json!({"metadata": {"refused": true}})),
    )
    .await;
    refused.error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some(), "Retry-After");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    // Another tenant is served meanwhile, from the connections the busy one cannot take.
    let started = Instant::now();
    let served =
        send(app.request_as(Method::GET, &format!("/v1/customers/{other}"), &other_token)).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served after {:?}",
        started.elapsed()
    );
    assert_eq!(
        until_waiting(&app.db, "Lock", 2).await.len(),
        2,
        "the busy tenant never held more than its two connections"
    );

    lock.rollback().await.unwrap();
    for task in holding {
        let reply = task.await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "a queued request is served: {}",
            reply.text()
        );
    }
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM customers WHERE id = $1")
            .bind(&busy)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        stored.get("refused").is_none(),
        "the refused write is not stored"
    );
}

/// The default bound (three quarters of the pool) and queue: one tenant at 64 concurrent
/// requests on a pool of 4 gets no refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_tenants_load_beyond_the_pool_is_queued_not_refused() {
    let app = spawn_app_with(|s| {
        s.rate_limit.enabled = false;
        s.database.max_connections = 4;
    })
    .await;
    assert_eq!(
        app.settings.database.tenant_max_connections, 0,
        "the default"
    );
    let id = app.create_id(json!({})).await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let request = if n % 4 == 0 {
            app.request(Method::PATCH, &format!("/v1/customers/{id}"))
                .json(&json!({"metadata": {"n": n}}))
        } else {
            app.request(Method::GET, &format!("/v1/customers/{id}/events?limit=100"))
        };
        tasks.push(tokio::spawn(async move { send(request).await }));
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}
