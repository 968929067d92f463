//! The NATS client of the relay: connects in the background, reconnects forever, keeps the
//! credentials out of the URLs it holds, and tells the relay (and `/readyz`) when it connects or
//! loses the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Publishing, PublishingStatus};
use crate::configuration::EventsSettings;

/// How often the client pings its server; three unanswered in a row end the connection.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// A client that connects in the background and reconnects forever. Credentials are taken out
/// of the URL and handed to the client separately, so that nothing it logs (it logs server
/// addresses at debug level) can show them.
pub(super) async fn connect(
    settings: &EventsSettings,
    status: &PublishingStatus,
    connected: Arc<Notify>,
) -> anyhow::Result<async_nats::Client> {
    let servers = nats_servers(settings.nats_url.expose())?;
    let mut options = async_nats::ConnectOptions::new()
        .name("customers-api relay")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        // A server that stops answering without closing the connection (a stalled host, a
        // network that drops packets) is left after 2 pings without a pong, about 3 s, for
        // another of the URL list. With the default (60 s) a relay connected to a frozen server
        // of a cluster kept its rounds waiting on it, holding the publisher lock, for the whole
        // stall, though the other servers had elected a new stream leader (issue 21).
        .ping_interval(PING_INTERVAL)
        .request_timeout(Some(settings.publish_timeout))
        .reconnect_delay_callback(|attempts| {
            // Back quickly after a short outage; at most every 2 s after a long one.
            Duration::from_millis(100 * attempts.min(20) as u64)
        });
    match servers.credentials {
        Credentials::None => {}
        Credentials::Token(token) => options = options.token(token),
        Credentials::UserPassword(user, password) => {
            options = options.user_and_password(user, password)
        }
    }
    let status = status.clone();
    options = options.event_callback(move |event| {
        let status = status.clone();
        let connected = connected.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    tracing::info!("connected to NATS; publishing events");
                    status.set(Publishing::Connected);
                    connected.notify_one();
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to NATS; events wait in the database");
                    status.set(Publishing::Unreachable);
                }
                _ => {}
            }
        }
    });
    let addrs = servers
        .urls
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow::anyhow!("a server address is not valid"))?;
    options
        .connect(addrs)
        .await
        .map_err(|e| anyhow::anyhow!("cannot set up the NATS client: {}", e.kind()))
}

#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    None,
    Token(String),
    UserPassword(String, String),
}

#[derive(Debug, PartialEq, Eq)]
struct Servers {
    /// Without their credentials.
    urls: Vec<String>,
    credentials: Credentials,
}

/// `events.nats_url`: one URL or several separated by commas; `user:password@` or `token@`
/// in them is taken out (the first one found applies to all).
fn nats_servers(setting: &str) -> anyhow::Result<Servers> {
    let mut credentials = Credentials::None;
    let mut urls = Vec::new();
    for raw in setting.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut url = url::Url::parse(raw)
            .map_err(|e| anyhow::anyhow!("events.nats_url is not a valid URL ({e})"))?;
        if !url.has_host() {
            anyhow::bail!("events.nats_url has no host");
        }
        let user = percent_decode(url.username())?;
        let password = url.password().map(percent_decode).transpose()?;
        if credentials == Credentials::None {
            credentials = match (user.is_empty(), password) {
                (true, None) => Credentials::None,
                (false, None) => Credentials::Token(user),
                (_, Some(password)) => Credentials::UserPassword(user, password),
            };
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        urls.push(url.to_string());
    }
    if urls.is_empty() {
        anyhow::bail!("events.nats_url holds no server");
    }
    Ok(Servers { urls, credentials })
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("events.nats_url has a malformed % escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("events.nats_url credentials are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_urls() {
        assert_eq!(
            nats_servers("nats://127.0.0.1:4222").unwrap(),
            Servers {
                urls: vec!["nats://127.0.0.1:4222".into()],
                credentials: Credentials::None
            }
        );
        assert_eq!(
            nats_servers("nats://relay:p%40ss%3Aword@nats-1:4222, tls://nats-2:4222").unwrap(),
            Servers {
                urls: vec!["nats://nats-1:4222".into(), "tls://nats-2:4222".into()],
                credentials: Credentials::UserPassword("relay".into(), "p@ss:word".into())
            }
        );
        assert_eq!(
            nats_servers("nats://s3cr3t@nats:4222").unwrap().credentials,
            Credentials::Token("s3cr3t".into())
        );
    }

    #[test]
    fn unusable_urls_are_refused_without_quoting_them() {
        for bad in ["", " , ", "nats://", "nats://u:%zz@h:1", "not a url"] {
            let e = nats_servers(bad).unwrap_err().to_string();
            assert!(!e.contains("%zz") && !e.contains("not a url"), "{e}");
        }
    }
}
