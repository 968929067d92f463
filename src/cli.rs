//! The command line: `serve` (the default), `migrate` and `token`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::auth::{mint_token, KeyRing, Mode, TokenRequest};
use crate::configuration::Settings;
use crate::startup::{self, Application};
use crate::{db, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "customers-api",
    version,
    about = "Customers and spending policies over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API on HOST:PORT (the default command).
    Serve,
    /// Apply the migrations in migrations/ and exit.
    Migrate,
    /// Print a token signed with the configured signing key (development and tests).
    Token {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "test", value_parser = parse_mode)]
        mode: Mode,
        /// Space-separated scopes: customers:read, customers:write, customers:admin.
        #[arg(long, default_value = "customers:read customers:write")]
        scope: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long, default_value = "dev")]
        sub: String,
    },
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "test" => Ok(Mode::Test),
        "live" => Ok(Mode::Live),
        _ => Err("must be test or live".into()),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("customers-api: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            org,
            mode,
            scope,
            ttl,
            sub,
        } => {
            let request = TokenRequest {
                org,
                mode,
                scope,
                ttl,
                sub,
            };
            KeyRing::from_settings(&settings.auth)
                .map_err(anyhow::Error::from)
                .and_then(|ring| mint_token(&ring, &request))
                .map(|token| println!("{token}"))
        }
        Command::Migrate => {
            let _telemetry = telemetry::init(settings.log.format, &settings.log.level);
            migrate(&settings).await
        }
        Command::Serve => {
            let _telemetry = telemetry::init(settings.log.format, &settings.log.level);
            match Application::build(settings).await {
                Ok(app) => app.run_until_signalled().await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("customers-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let (options, private) = startup::database(settings).await?;
    let result = db::migrate(&options).await;
    if let Some(server) = private {
        server.stop();
    }
    result?;
    tracing::info!("migrations applied");
    Ok(())
}
