//! The command line: `serve` (the default), `migrate`, `token` and `check-config`.

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
        /// The tenant (organisation id) the token acts for, e.g. org_demo.
        #[arg(long)]
        org: String,
        /// test or live: which of the tenant's two worlds the token sees (events of test
        /// customers go to customers.test.<org>.>, of live ones to customers.live.<org>.>).
        #[arg(long, default_value = "test", value_parser = parse_mode)]
        mode: Mode,
        /// Space-separated scopes: customers:read, customers:write, customers:admin (each implies
        /// the ones before it), and webhooks:manage (separate from the customer scopes).
        #[arg(long, default_value = "customers:read customers:write")]
        scope: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The subject (`sub`): who the caller is, as the service's logs and events name it.
        #[arg(long, default_value = "dev")]
        sub: String,
    },
    /// Load the configuration as `serve` would, validate it and print it with secrets hidden;
    /// exit 1 naming the setting when it is invalid.
    CheckConfig,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "test" => Ok(Mode::Test),
        "live" => Ok(Mode::Live),
        _ => Err("must be test or live".into()),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("customers-api: {e}");
            return match command {
                Command::CheckConfig => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            };
        }
    };
    let result = match command {
        Command::CheckConfig => check_config(&settings),
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
                Err(e) => {
                    // In the log too (JSON lines in production), not only on stderr.
                    tracing::error!(error = format!("{e:#}"), "start-up failed");
                    Err(e)
                }
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

/// What `serve` checks before it touches the database: the settings (already loaded and
/// validated) and the verification keys (their files are read). Prints the settings, secrets
/// hidden (a `Secret` shows as `[redacted]`), and where the database is.
fn check_config(settings: &Settings) -> anyhow::Result<()> {
    KeyRing::from_settings(&settings.auth).map_err(|e| anyhow::anyhow!("auth.keys: {e}"))?;
    let url = settings.database.url.expose();
    let database = if url.is_empty() {
        format!(
            "a private PostgreSQL under {}",
            settings.database.data_dir.display()
        )
    } else {
        let hosts = db::Hosts::parse(url)
            .map_err(|e| anyhow::anyhow!("database.url (DATABASE_URL) {e}"))?;
        let labels: Vec<&str> = (0..hosts.len()).map(|i| hosts.label(i)).collect();
        format!(
            "{} (sslmode={}{})",
            labels.join(", "),
            db::tls::mode_name(hosts.selected()),
            if hosts.read_write() {
                ", target_session_attrs=read-write"
            } else {
                ""
            }
        )
    };
    // One write, and a closed pipe (`check-config | head`) is no error.
    use std::io::Write;
    let text = format!(
        "configuration is valid (profile {})\ndatabase: {database}\n{settings:#?}\n",
        settings.profile.name()
    );
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "{path} --{id} has no help text"
                );
            }
            for sub in command.get_subcommands() {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no about",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        check(&cli, "customers-api");
    }
}
