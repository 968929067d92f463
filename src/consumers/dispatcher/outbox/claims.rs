//! The senders' statements: claiming due deliveries and recording their attempts (see `super`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::begin_all;

/// A delivery claimed for one attempt, with what the attempt needs.
pub struct Claimed {
    pub org_id: String,
    pub mode: String,
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// This claim's number: its outcome is recorded only while no later claim took it.
    pub claims: i32,
    pub url: String,
    pub failing_since: Option<DateTime<Utc>>,
    /// The event's body as stored (the feed's bytes); `None`: the event is no longer kept.
    pub body: Option<String>,
    /// The secrets that sign it now, sealed, newest first (read with the claim: no round trip
    /// of its own per attempt).
    pub secrets: Vec<Vec<u8>>,
    /// Seconds from the event's commit to now (database clock), for the first attempt's metric.
    pub since_recorded: f64,
}

/// Claims up to `limit` due deliveries, soonest first: none of a webhook in `full`, at most
/// `per_webhook` of any one webhook (`free` of those in `partly`). Leased for `lease_secs`.
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    per_webhook: i64,
    full: &[String],
    partly: (&[String], &[i32]),
    lease_secs: f64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut tx = begin_all(pool).await?;
    // Measured under a fan-out (200,000 due, the table not analysed yet): the planner read
    // every due delivery with a bitmap scan and sorted them all, a second and more per claim.
    // Without bitmap scans and sorts it walks `webhook_deliveries_due` in order and stops at
    // the limit, as the dispatcher's round does with the relay's index. The webhook's columns
    // are read by key for each claimed row: joined in FROM, the planner (expecting one row)
    // walked every delivery of every webhook (9 s for 64 claims at 438,000 deliveries).
    // The webhook's `enabled` is read by key per row walked, for the same reason: a disabled
    // webhook's deliveries that are still pending (one in flight when it was disabled, one
    // dispatched as it was, retry and recover) wait, unattempted, until it is enabled again.
    sqlx::query_scalar!(
        r#"SELECT set_config('enable_bitmapscan', 'off', true) IS NOT NULL
                  AND set_config('enable_sort', 'off', true) IS NOT NULL AS "set!""#
    )
    .fetch_one(&mut *tx)
    .await?;
    let claimed = sqlx::query_as!(
        Claimed,
        r#"WITH due AS (
                SELECT d.org_id, d.mode, d.id, d.webhook_id, d.next_attempt_at
                  FROM webhook_deliveries d
                 WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                   AND NOT (d.webhook_id = ANY($2))
                   AND (SELECT w.enabled FROM webhooks w
                         WHERE w.org_id = d.org_id AND w.mode = d.mode
                           AND w.id = d.webhook_id)
                 ORDER BY d.next_attempt_at
                 LIMIT $1::bigint * 4
                   FOR UPDATE SKIP LOCKED),
           ranked AS (
                SELECT due.*, row_number() OVER (PARTITION BY due.webhook_id
                                                 ORDER BY due.next_attempt_at) AS rn
                  FROM due),
           chosen AS (
                SELECT r.org_id, r.mode, r.id
                  FROM ranked r
                  LEFT JOIN unnest($3::text[], $4::int[]) AS f(webhook_id, free)
                    ON f.webhook_id = r.webhook_id
                 WHERE r.rn <= COALESCE(f.free, $5::bigint)
                 ORDER BY r.next_attempt_at
                 LIMIT $1::bigint)
           UPDATE webhook_deliveries d
              SET next_attempt_at = now() + make_interval(secs => $6),
                  leased_until = now() + make_interval(secs => $6),
                  claims = d.claims + 1
             FROM chosen c
            WHERE d.org_id = c.org_id AND d.mode = c.mode AND d.id = c.id
        RETURNING d.org_id, d.mode, d.id, d.webhook_id, d.event_id, d.attempts, d.claims,
                  (SELECT w.url FROM webhooks w
                    WHERE w.org_id = d.org_id AND w.mode = d.mode AND w.id = d.webhook_id)
                      AS "url!",
                  (SELECT w.failing_since FROM webhooks w
                    WHERE w.org_id = d.org_id AND w.mode = d.mode AND w.id = d.webhook_id)
                      AS failing_since,
                  (SELECT e.body::text FROM customer_events e
                    WHERE e.org_id = d.org_id AND e.mode = d.mode
                      AND e.customer_id = d.customer_id AND e.version = d.event_version)
                      AS body,
                  ARRAY(SELECT s.sealed FROM webhook_secrets s
                         WHERE s.org_id = d.org_id AND s.mode = d.mode
                           AND s.webhook_id = d.webhook_id
                           AND (s.expires_at IS NULL OR s.expires_at > now())
                         ORDER BY s.n DESC) AS "secrets!",
                  EXTRACT(EPOCH FROM clock_timestamp() - d.event_recorded_at)::float8
                      AS "since_recorded!""#,
        limit,
        full,
        partly.0,
        partly.1,
        per_webhook,
        lease_secs
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Which claim of which delivery an outcome is for (what recording it needs of the claim).
pub struct ClaimKey {
    pub org_id: String,
    pub mode: String,
    pub id: String,
    pub webhook_id: String,
    pub claims: i32,
}

impl Claimed {
    pub fn key(&self) -> ClaimKey {
        ClaimKey {
            org_id: self.org_id.clone(),
            mode: self.mode.clone(),
            id: self.id.clone(),
            webhook_id: self.webhook_id.clone(),
            claims: self.claims,
        }
    }
}

/// What an attempt came to.
pub struct Outcome {
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// succeeded, failed or pending (another attempt after `retry_in_secs`).
    pub status: &'static str,
    pub retry_in_secs: Option<f64>,
    /// A success stops the webhook's failing clock; a failure starts it if stopped.
    pub succeeded: bool,
    /// Disable the webhook for this reason (gone, failing).
    pub disable: Option<&'static str>,
}

/// Records attempts, in one transaction: each moves its delivery on if its claim still holds
/// it, and updates its webhook (the failing clock, or disables it and ends its pending
/// deliveries). Returns how many claims still held their delivery (the others' leases ended
/// and another claim took them). Batched: an attempt recorded alone cost a commit and five
/// round trips, and at the rate a fan-out makes attempts that was where the time went.
pub async fn record(pool: &PgPool, outcomes: &[(ClaimKey, Outcome)]) -> Result<u64, sqlx::Error> {
    let column = |f: fn(&ClaimKey, &Outcome) -> String| {
        outcomes.iter().map(|(c, o)| f(c, o)).collect::<Vec<_>>()
    };
    let orgs = column(|c, _| c.org_id.clone());
    let modes = column(|c, _| c.mode.clone());
    let ids = column(|c, _| c.id.clone());
    let statuses = column(|_, o| o.status.to_owned());
    let claims: Vec<i32> = outcomes.iter().map(|(c, _)| c.claims).collect();
    let retry: Vec<f64> = outcomes
        .iter()
        .map(|(_, o)| o.retry_in_secs.unwrap_or(0.0))
        .collect();
    let at: Vec<DateTime<Utc>> = outcomes.iter().map(|(_, o)| o.at).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|(_, o)| o.status_code).collect();
    let durations: Vec<i32> = outcomes.iter().map(|(_, o)| o.duration_ms).collect();
    let errors: Vec<Option<String>> = outcomes.iter().map(|(_, o)| o.error.clone()).collect();
    let bodies: Vec<Option<String>> = outcomes
        .iter()
        .map(|(_, o)| o.response_body.clone())
        .collect();
    let mut tx = begin_all(pool).await?;
    let recorded = sqlx::query!(
        r#"WITH o AS MATERIALIZED (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                                    $6::float8[], $7::timestamptz[], $8::int[], $9::int[],
                                    $10::text[], $11::text[])
                        AS o(org_id, mode, id, claims, status, retry_in, at, status_code,
                             duration_ms, error, response_body)),
           d AS (
               UPDATE webhook_deliveries w
                  SET attempts = w.attempts + 1, status = o.status, leased_until = NULL,
                      next_attempt_at = CASE WHEN o.status = 'pending'
                                             THEN now() + make_interval(secs => o.retry_in) END
                 FROM o
                WHERE w.org_id = o.org_id AND w.mode = o.mode AND w.id = o.id
                  AND w.claims = o.claims
               RETURNING w.org_id, w.mode, w.id, w.attempts)
           INSERT INTO webhook_attempts (org_id, mode, delivery_id, n, at, status_code,
                                         duration_ms, error, response_body)
           SELECT d.org_id, d.mode, d.id, d.attempts, o.at, o.status_code, o.duration_ms,
                  o.error, o.response_body
             FROM d JOIN o ON o.org_id = d.org_id AND o.mode = d.mode AND o.id = d.id"#,
        &orgs,
        &modes,
        &ids,
        &claims,
        &statuses,
        &retry,
        &at,
        &codes as &[Option<i32>],
        &durations,
        &errors as &[Option<String>],
        &bodies as &[Option<String>]
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let clocks: Vec<(&ClaimKey, &Outcome)> = outcomes
        .iter()
        .filter(|(_, o)| o.disable.is_none())
        .map(|(c, o)| (c, o))
        .collect();
    failing_clocks(&mut tx, &clocks).await?;
    for (c, o) in outcomes {
        if let Some(reason) = o.disable {
            disable(&mut tx, c, reason).await?;
        }
    }
    tx.commit().await?;
    Ok(recorded)
}

/// Disables the webhook (gone, failing) unless it is disabled already, and ends its pending
/// deliveries that are not in flight.
async fn disable(conn: &mut PgConnection, c: &ClaimKey, reason: &str) -> Result<(), sqlx::Error> {
    let disabled = sqlx::query!(
        r#"UPDATE webhooks
              SET enabled = false, disabled_reason = $4, version = version + 1,
                  updated_at = now()
            WHERE org_id = $1 AND mode = $2 AND id = $3 AND enabled"#,
        c.org_id,
        c.mode,
        c.webhook_id,
        reason
    )
    .execute(&mut *conn)
    .await?;
    if disabled.rows_affected() > 0 {
        sqlx::query!(
            r#"UPDATE webhook_deliveries
                  SET status = 'failed', next_attempt_at = NULL
                WHERE org_id = $1 AND mode = $2 AND webhook_id = $3 AND status = 'pending'
                  AND created_at < 'infinity' -- webhook_deliveries_by_webhook is partial on it
                  AND (leased_until IS NULL OR leased_until <= now())"#,
            c.org_id,
            c.mode,
            c.webhook_id
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Moves the failing clock of the webhooks of these outcomes (in the order they came): a
/// success stops it, a failure starts it if stopped (and restarts it after a success). Only a
/// change of the clock writes the webhook's row: a healthy webhook's row is not rewritten by
/// every delivery.
async fn failing_clocks(
    conn: &mut PgConnection,
    outcomes: &[(&ClaimKey, &Outcome)],
) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    // Per webhook: whether its last outcome succeeded, and whether a failure came after a
    // success (the clock starts again then).
    let mut last: Vec<(&ClaimKey, bool, bool)> = Vec::new();
    for (c, o) in outcomes {
        match last.iter_mut().find(|(k, ..)| {
            k.webhook_id == c.webhook_id && k.org_id == c.org_id && k.mode == c.mode
        }) {
            Some(entry) => {
                entry.2 = !o.succeeded && (entry.1 || entry.2);
                entry.1 = o.succeeded;
            }
            None => last.push((c, o.succeeded, false)),
        }
    }
    let orgs: Vec<&str> = last.iter().map(|(c, ..)| c.org_id.as_str()).collect();
    let modes: Vec<&str> = last.iter().map(|(c, ..)| c.mode.as_str()).collect();
    let ids: Vec<&str> = last.iter().map(|(c, ..)| c.webhook_id.as_str()).collect();
    let succeeded: Vec<bool> = last.iter().map(|(_, s, _)| *s).collect();
    let restart: Vec<bool> = last.iter().map(|(.., r)| *r).collect();
    sqlx::query!(
        r#"UPDATE webhooks w
              SET failing_since = CASE WHEN u.succeeded THEN NULL ELSE now() END
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[])
                  AS u(org_id, mode, id, succeeded, restart)
            WHERE w.org_id = u.org_id AND w.mode = u.mode AND w.id = u.id
              AND CASE WHEN u.succeeded THEN w.failing_since IS NOT NULL
                       ELSE w.failing_since IS NULL OR u.restart END"#,
        &orgs as &[&str],
        &modes as &[&str],
        &ids as &[&str],
        &succeeded,
        &restart
    )
    .execute(conn)
    .await?;
    Ok(())
}
