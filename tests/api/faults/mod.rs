//! Faults: PostgreSQL going away under load (`db_down`), pool exhaustion and slow queries
//! (`pool`), a request abandoned by its client mid-statement (`abandoned`), a server killed with
//! SIGKILL under idempotent writes (`sigkill`), and three server processes on one database
//! (`instances`). Every test talks to real servers over HTTP and to a
//! real PostgreSQL, checks what is stored afterwards, and prints its figures (run with
//! `--nocapture` to see them).

mod abandoned;
mod db_down;
mod instances;
mod pool;
mod sigkill;

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use sqlx::PgPool;

use crate::support::*;

/// Every request of these tests must be answered within this bound: a fault may make the
/// service refuse, never hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("a client")
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A keyed write as a client would keep it to retry: everything needed to send it again.
#[derive(Debug, Clone)]
struct KeyedWrite {
    key: String,
    method: Method,
    path: String,
    body: String,
}

impl KeyedWrite {
    fn request(&self, client: &reqwest::Client, base: &str, token: &str) -> RequestBuilder {
        let content_type = if self.method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        client
            .request(self.method.clone(), format!("{base}{}", self.path))
            .bearer_auth(token)
            .header("idempotency-key", &self.key)
            .header("content-type", content_type)
            .body(self.body.clone())
    }

    /// Sends it until it is settled: a 409 `idempotency_request_in_progress` means another
    /// attempt with the key still runs, so retry, but only for `limit` — a key that stays
    /// "in progress" longer is stuck. Returns the settled reply and how many 409s it took.
    async fn settle(
        &self,
        client: &reqwest::Client,
        base: &str,
        token: &str,
        limit: Duration,
    ) -> (Reply, usize) {
        let deadline = Instant::now() + limit;
        let mut in_progress = 0;
        loop {
            let reply = try_send(self.request(client, base, token))
                .await
                .unwrap_or_else(|e| panic!("{} {}: no answer: {e}", self.method, self.key));
            if reply.status != 409
                || reply.error_code().as_deref() != Some("idempotency_request_in_progress")
            {
                return (reply, in_progress);
            }
            assert!(
                reply.header("retry-after").is_some(),
                "409 in progress without Retry-After"
            );
            in_progress += 1;
            assert!(
                Instant::now() < deadline,
                "key {} is stuck: still in progress after {limit:?}",
                self.key
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
