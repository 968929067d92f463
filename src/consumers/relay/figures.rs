//! What `/metrics` and `/readyz` say about events: the publication backlog, how far the feed's
//! horizon lags, and the events set aside as undeliverable. Reads only, across tenants
//! (`app.relay`), in a transaction that takes no transaction id.

mod cache;

use prometheus::{Encoder, Gauge, IntGauge, Registry, TextEncoder};
use sqlx::{PgConnection, PgPool};

pub use cache::FiguresCache;

/// Counting unpublished events for `/metrics` stops here, so that a refresh stays cheap however
/// large the backlog.
pub const BACKLOG_COUNT_CAP: i64 = 1_000_000;

/// Events after the relay position.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// How many (at most [`BACKLOG_COUNT_CAP`]).
    pub unpublished: i64,
    /// Seconds since the oldest of them was recorded; 0 when there is none.
    pub oldest_age_seconds: f64,
}

/// How far the feed's horizon (`pg_snapshot_xmin`: the oldest transaction still running in the
/// cluster) lags behind. The feed and the relay show only events below it, so any long
/// transaction, of this service or not, holds every tenant's feed back.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    /// Transaction ids assigned since the oldest transaction still running began
    /// (`xmax - xmin` of the current snapshot); 0 when none runs.
    pub transactions: i64,
    /// Seconds since the next committed event the horizon holds back was recorded; 0 when none
    /// is held back.
    pub held_back_seconds: f64,
}

/// Everything at once; the backlog and the undeliverable count only when events are published.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub backlog: Option<Backlog>,
    pub horizon: Horizon,
    pub undeliverable: Option<i64>,
}

pub async fn read(pool: &PgPool, publishing: bool) -> Result<Figures, sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    relay_reads(&mut tx).await?;
    let horizon = horizon(&mut tx).await?;
    let (backlog, undeliverable) = if publishing {
        (
            Some(backlog(&mut tx).await?),
            Some(undeliverable_in(&mut tx).await?),
        )
    } else {
        (None, None)
    };
    tx.commit().await?;
    Ok(Figures {
        backlog,
        horizon,
        undeliverable,
    })
}

/// How many events are set aside as undeliverable, for `/readyz`.
pub async fn undeliverable(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let mut tx = crate::db::begin(pool).await?;
    relay_reads(&mut tx).await?;
    let n = undeliverable_in(&mut tx).await?;
    tx.commit().await?;
    Ok(n)
}

async fn relay_reads(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT set_config('app.relay', 'on', true)")
        .fetch_one(conn)
        .await?;
    Ok(())
}

async fn undeliverable_in(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM event_undeliverable"#)
        .fetch_one(conn)
        .await
}

/// The backlog, counted up to [`BACKLOG_COUNT_CAP`] (the oldest age is then that of the oldest
/// counted).
async fn backlog(conn: &mut PgConnection) -> Result<Backlog, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "unpublished!",
                  COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(u.recorded_at)), 0)::float8
                      AS "oldest_age_seconds!"
             FROM (SELECT e.recorded_at
                     FROM customer_events e
                    WHERE (e.feed_xid, e.seq) > ((SELECT feed_xid FROM event_relay WHERE id = 1),
                                                 (SELECT seq FROM event_relay WHERE id = 1))
                      AND e.occurred_at IS NOT NULL -- customer_events_relay is partial on it
                    LIMIT $1) u"#,
        BACKLOG_COUNT_CAP
    )
    .fetch_one(conn)
    .await?;
    Ok(Backlog {
        unpublished: row.unpublished,
        oldest_age_seconds: row.oldest_age_seconds.max(0.0),
    })
}

/// The horizon's lag. The held-back event is the first at or above the horizon in feed order
/// (the next the feed will show): one row of `customer_events_relay`.
async fn horizon(conn: &mut PgConnection) -> Result<Horizon, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH s AS MATERIALIZED (
                SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
                       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax)
           SELECT (SELECT xmax - xmin FROM s) AS "transactions!",
                  COALESCE((SELECT EXTRACT(EPOCH FROM clock_timestamp() - e.recorded_at)::float8
                              FROM customer_events e
                             WHERE e.feed_xid >= (SELECT xmin FROM s)
                               AND e.occurred_at IS NOT NULL -- customer_events_relay
                             ORDER BY e.feed_xid, e.seq
                             LIMIT 1), 0)::float8 AS "held_back_seconds!""#
    )
    .fetch_one(conn)
    .await?;
    Ok(Horizon {
        transactions: row.transactions.max(0),
        held_back_seconds: row.held_back_seconds.max(0.0),
    })
}

/// The figures' lines of `/metrics`, in a registry of this scrape's own: the values belong to
/// this server's database, not to the process (tests run several servers in one process).
pub fn exposition(figures: Figures) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&figure_families(figures), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn figure_families(figures: Figures) -> Vec<prometheus::proto::MetricFamily> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: f64| {
        let gauge = Gauge::new(name, help).expect("valid metric");
        gauge.set(value);
        let _ = registry.register(Box::new(gauge));
    };
    let int_gauge = |name: &str, help: &str, value: i64| {
        let gauge = IntGauge::new(name, help).expect("valid metric");
        gauge.set(value);
        let _ = registry.register(Box::new(gauge));
    };
    int_gauge(
        "events_feed_horizon_lag_transactions",
        "Transaction ids assigned since the oldest transaction still running in the cluster began: the feed shows nothing past it",
        figures.horizon.transactions,
    );
    gauge(
        "events_feed_held_back_seconds",
        "Seconds since the next committed event the feed's horizon holds back was recorded; 0 when none is held back",
        figures.horizon.held_back_seconds,
    );
    if let Some(backlog) = figures.backlog {
        int_gauge(
            "events_unpublished",
            "Events after the relay position, not yet acknowledged by JetStream (counted up to 1000000)",
            backlog.unpublished,
        );
        gauge(
            "events_oldest_unpublished_age_seconds",
            "Seconds since the oldest unpublished event was recorded; 0 when none waits",
            backlog.oldest_age_seconds,
        );
    }
    if let Some(n) = figures.undeliverable {
        int_gauge(
            "events_undeliverable",
            "Events set aside because JetStream refused them for good (event_undeliverable)",
            n,
        );
    }
    registry.gather()
}
