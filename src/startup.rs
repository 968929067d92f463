//! Builds the application (database, migrations, HTTP server, background tasks) and runs it
//! until it is told to stop.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::{Gatekeeper, KeyRing};
use crate::configuration::Settings;
use crate::customers::coalesce::Coalescer;
use crate::customers::recent::Recent;
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::OpenApiDocument;
use crate::pagination::Cursors;
use crate::private_postgres::{Durability, PrivatePostgres};
use crate::rate_limit::RateLimits;
use crate::state::AppState;
use crate::{db, events, health, request_context};

pub struct Application {
    port: u16,
    /// Set at a stop signal: `/readyz` answers 503 for `drain_delay` before the listener closes.
    draining: web::Data<health::Draining>,
    drain_delay: std::time::Duration,
    server: Server,
    pool: PgPool,
    stop_background: CancellationToken,
    sweeper: tokio::task::JoinHandle<()>,
    relay: tokio::task::JoinHandle<()>,
    /// The listener of `/metrics` alone (`server.metrics_address`), when there is one.
    metrics: Option<(
        u16,
        actix_web::dev::ServerHandle,
        tokio::task::JoinHandle<()>,
    )>,
    webhooks: tokio::task::JoinHandle<()>,
    private_postgres: Option<PrivatePostgres>,
    monitor: Option<db::monitor::Monitor>,
}

/// Where the database is: `DATABASE_URL`, or a private server started here. The options are
/// those of the host selected among the URL's hosts (see [`database_hosts`]).
pub async fn database(
    settings: &Settings,
) -> anyhow::Result<(PgConnectOptions, Option<PrivatePostgres>)> {
    let (hosts, server) = database_hosts(settings).await?;
    Ok((hosts.selected().clone(), server))
}

/// The hosts of `DATABASE_URL` (one or several), with the first acceptable one selected when
/// one answers now (else the first), or the private server started here.
pub async fn database_hosts(
    settings: &Settings,
) -> anyhow::Result<(db::Hosts, Option<PrivatePostgres>)> {
    let url = settings.database.url.expose();
    if !url.is_empty() {
        let mut hosts = db::Hosts::parse(url)
            .map_err(|e| anyhow::anyhow!("database.url (DATABASE_URL) {e}"))?;
        if hosts.len() > 1 || hosts.read_write() {
            if let Some((index, conn)) = hosts.select().await {
                use sqlx::Connection;
                conn.close().await.ok();
                tracing::info!(host = hosts.label(index), "database host selected");
            } else {
                tracing::warn!(
                    tls = hosts.tls_failure(),
                    "no database host is acceptable now; starting with the first"
                );
            }
        }
        return Ok((hosts, None));
    }
    let data_dir = settings.database.data_dir.clone();
    let server =
        tokio::task::spawn_blocking(move || PrivatePostgres::start(&data_dir, Durability::Durable))
            .await
            .context("the PostgreSQL start-up task failed")??;
    // A killed service leaves no server behind: it stops once this process is gone.
    if let Err(e) = server.watch(&crate::private_postgres::Watchdog {
        owned: true,
        ..Default::default()
    }) {
        tracing::warn!(error = %format!("{e:#}"), "no watchdog for the private PostgreSQL");
    }
    Ok((db::Hosts::single(server.connect_options()), Some(server)))
}

impl Application {
    /// Resolves the database (starting a private one when no URL is configured), migrates and
    /// binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (hosts, private_postgres) = database_hosts(&settings).await?;
        let hosts = hosts.map_options(|o| db::connection_options(o, &settings.database));
        let pool = db::pool_for(&hosts, &settings.database);
        match Self::build_with_pool(settings, pool.clone()).await {
            Ok(mut app) => {
                app.private_postgres = private_postgres;
                app.monitor = Some(db::monitor::Monitor::spawn(pool, hosts));
                Ok(app)
            }
            Err(e) => {
                if let Some(server) = private_postgres {
                    server.stop();
                }
                Err(e)
            }
        }
    }

    pub async fn build_with_pool(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        if settings.database.migrate_on_start {
            let options = pool.connect_options();
            db::migrate(&options).await.map_err(|e| {
                // A TLS failure is named as one: a certificate to fix, not a migration.
                match db::tls::migration_failure(&e) {
                    Some(failure) => anyhow::anyhow!(db::tls::describe(&options, &failure)),
                    None => anyhow::Error::from(e).context("applying migrations failed"),
                }
            })?;
        }
        let gate = web::Data::new(Gatekeeper {
            keys: KeyRing::from_settings(&settings.auth)?,
            limits: RateLimits::from_settings(&settings.rate_limit),
        });
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.server.host, settings.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let relay_wake = Arc::new(Notify::new());
        let publishing = crate::consumers::relay::PublishingStatus::new(
            !settings.events.nats_url.expose().is_empty(),
        );
        let webhooks = Arc::new(crate::webhooks::shared::Webhooks::new(
            settings.webhooks.clone(),
        ));
        let cursors = web::Data::new(Cursors::new(
            settings.pagination.cursor_secret.expose().as_bytes(),
        ));
        // What the event core's route takes: the pool and the cursors, not the whole state.
        let pool_data = web::Data::new(pool.clone());
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            idempotency: settings.idempotency.clone(),
            events: settings.events.clone(),
            cursors: cursors.clone(),
            relay_wake: relay_wake.clone(),
            publishing: publishing.clone(),
            recent: Recent::new(settings.cache.customers_mib.saturating_mul(1024 * 1024)),
            reads: Coalescer::new(
                settings.database.coalesce_reads,
                settings.database.acquire_timeout + settings.database.statement_timeout,
            ),
            webhooks: webhooks.clone(),
        });
        let document = web::Data::new(OpenApiDocument::build(&settings));
        let figures = web::Data::new(crate::consumers::relay::figures::FiguresCache::default());
        let metrics_listener = metrics_listener(&settings)?;
        // With a metrics listener of its own, the main one answers /metrics with 404.
        let health_routes: fn(&mut web::ServiceConfig) = if metrics_listener.is_some() {
            health::probes
        } else {
            health::routes
        };
        let (state_for_metrics, figures_for_metrics, gate_for_metrics) =
            (state.clone(), figures.clone(), gate.clone());
        let gate_for_tasks = gate.clone();
        // The request's bound and its tenant's slot (shared by every worker).
        let deadline = db::deadline::Deadline::new(&settings.database, pool.clone());
        let draining = web::Data::new(health::Draining::default());
        let draining_for_stop = draining.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                // Inside the request context, so that its 503 carries the request id.
                .wrap(middleware::from_fn({
                    let deadline = deadline.clone();
                    move |req, next| db::deadline::limit(deadline.clone(), req, next)
                }))
                .wrap(middleware::from_fn(request_context::middleware))
                .app_data(state.clone())
                .app_data(pool_data.clone())
                .app_data(cursors.clone())
                .app_data(gate.clone())
                .app_data(document.clone())
                .app_data(figures.clone())
                .app_data(draining.clone())
                .configure(crate::customers::routes)
                .configure(crate::events::routes)
                .configure(crate::webhooks::routes)
                .configure(health_routes)
                .configure(crate::openapi::routes)
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::NotFound("no route matches this path"))
                }))
        })
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
        // actix stops at once on SIGINT; both signals get the graceful stop instead
        // (`run_until_signalled`), and a server inside tests reacts to none.
        .disable_signals()
        .listen(listener)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.run();
        let metrics = match metrics_listener {
            Some(listener) => Some(serve_metrics(
                listener,
                state_for_metrics,
                figures_for_metrics,
                gate_for_metrics,
            )?),
            None => None,
        };

        let stop_background = CancellationToken::new();
        let sweeper = tokio::spawn(idempotency::sweeper::run(
            pool.clone(),
            settings.idempotency.clone(),
            stop_background.clone(),
        ));
        if let Some(retention) = settings.events.retention {
            tokio::spawn(events::retention::run(
                pool.clone(),
                retention,
                !settings.events.nats_url.expose().is_empty(),
                settings.idempotency.sweep_interval,
                settings.idempotency.sweep_batch,
                stop_background.clone(),
            ));
        }
        let relay = tokio::spawn(crate::consumers::relay::run(
            pool.clone(),
            settings.events.clone(),
            crate::consumers::relay::round_limit(&settings.database, &settings.events),
            relay_wake,
            publishing,
            stop_background.clone(),
        ));
        tokio::spawn(crate::auth::keep_keys_fresh(
            gate_for_tasks.clone(),
            stop_background.clone(),
        ));
        tokio::spawn(crate::webhooks::reseal::run(
            pool.clone(),
            webhooks.clone(),
            settings.idempotency.sweep_interval,
            stop_background.clone(),
        ));
        let webhooks = crate::consumers::dispatcher::spawn(
            pool.clone(),
            webhooks,
            settings.database.acquire_timeout + 2 * settings.database.statement_timeout,
            crate::consumers::dispatcher::Sweep {
                interval: settings.idempotency.sweep_interval,
                batch: settings.idempotency.sweep_batch,
            },
            stop_background.clone(),
        );
        tokio::spawn(forget_idle_buckets(gate_for_tasks, stop_background.clone()));
        tracing::info!(
            port,
            profile = settings.profile.name(),
            "customers-api listening"
        );
        Ok(Self {
            port,
            draining: draining_for_stop,
            drain_delay: settings.server.drain_delay,
            server,
            pool,
            stop_background,
            sweeper,
            relay,
            metrics,
            webhooks,
            private_postgres: None,
            monitor: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `/metrics` listener, when `server.metrics_address` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _, _)| *port)
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully: no new connections, requests in
    /// flight finish within `server.shutdown_timeout` (see [`Application::run_until_stopped`]).
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let handle = self.server.handle();
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let (draining, delay) = (self.draining.clone(), self.drain_delay);
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            }
            // Leaving: /readyz says so at once, and everything is still served for the drain
            // delay, so that a balancer stops routing here before the listener closes (a
            // request sent to a closed listener is the balancer's to retry, one sent during
            // the delay is answered).
            draining.start();
            if !delay.is_zero() {
                tracing::info!(
                    delay_ms = delay.as_millis() as u64,
                    "draining: /readyz answers 503 until the listener closes"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = terminate.recv() => tracing::info!("SIGTERM again: stopping now"),
                    _ = interrupt.recv() => tracing::info!("SIGINT again: stopping now"),
                }
            }
            handle.stop(true).await;
        });
        self.run_until_stopped().await
    }

    /// Serves until the server is stopped, then stops the background tasks, closes the pool and
    /// stops the private PostgreSQL if this process started it.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        tracing::info!("HTTP server stopped; shutting down");
        if let Some((_, handle, task)) = self.metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        self.stop_background.cancel();
        let _ = self.sweeper.await;
        let _ = self.relay.await;
        let _ = self.webhooks.await;
        if let Some(monitor) = self.monitor {
            monitor.stop().await;
        }
        self.pool.close().await;
        if let Some(server) = self.private_postgres {
            tokio::task::spawn_blocking(move || server.stop()).await?;
        }
        served.context("the HTTP server failed")
    }
}

/// The listener of `server.metrics_address`, if set.
fn metrics_listener(settings: &Settings) -> anyhow::Result<Option<TcpListener>> {
    let address = settings.server.metrics_address.trim();
    if address.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} (server.metrics_address)"))?;
    Ok(Some(listener))
}

/// `/metrics` alone on its own listener, one worker: a port that only the monitoring network
/// reaches, so the public listener does not expose it. Anything else there is 404.
fn serve_metrics(
    listener: TcpListener,
    state: web::Data<AppState>,
    figures: web::Data<crate::consumers::relay::figures::FiguresCache>,
    gate: web::Data<Gatekeeper>,
) -> anyhow::Result<(
    u16,
    actix_web::dev::ServerHandle,
    tokio::task::JoinHandle<()>,
)> {
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(request_context::middleware))
            .app_data(state.clone())
            .app_data(figures.clone())
            .app_data(gate.clone())
            .configure(health::metrics_route)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::NotFound("no route matches this path"))
            }))
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    tracing::info!(port, "metrics listening");
    Ok((port, handle, task))
}

/// Drops the rate-limit buckets of tenants that have been idle long enough to be full again.
async fn forget_idle_buckets(gate: web::Data<Gatekeeper>, stop: CancellationToken) {
    let Some(limits) = gate.limits.as_ref() else {
        return;
    };
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = interval.tick() => limits.forget_idle(),
        }
    }
}
