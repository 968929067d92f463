//! What the statements about a write's key bind: the claim of the key, and the save of the
//! reply under it. Below both the statements (`store`, `sql`) and the write that runs them
//! (`write`).

use std::time::Duration;

use super::{KeyedRequest, Reply};
use crate::tenant::Tenant;

/// A key about to be claimed by a write, with everything its claim statement binds.
pub struct Claim {
    pub(super) tenant: Tenant,
    pub(super) keyed: KeyedRequest,
    pub(super) retention: Duration,
    pub(super) wait: Duration,
}

impl Claim {
    pub fn org(&self) -> &str {
        &self.tenant.org
    }
    pub fn mode(&self) -> &'static str {
        self.tenant.mode.as_str()
    }
    pub fn key(&self) -> &str {
        self.keyed.key.as_str()
    }
    pub fn fingerprint(&self) -> &[u8] {
        &self.keyed.fingerprint
    }
    /// Seconds a claimed key is kept.
    pub fn retention_secs(&self) -> f64 {
        self.retention.as_secs_f64()
    }
    /// The `lock_timeout` (ms, as text) for waiting on a duplicate still in flight.
    pub fn wait_ms(&self) -> String {
        self.wait.as_millis().max(1).to_string()
    }
}

/// The tenant and key of a write, for its write statements to store the reply with.
pub struct Saver {
    pub(super) tenant: Tenant,
    pub(super) key: Option<String>,
}

impl Saver {
    /// What a write statement binds to store `reply` in the same statement.
    pub fn save<'a>(&'a self, reply: &'a Reply) -> SaveReply<'a> {
        SaveReply {
            tenant: &self.tenant,
            key: self.key.as_deref(),
            reply,
        }
    }
}

/// What a write statement binds to store a reply under the write's key in the same statement
/// (see `idempotency::query_saving!`). Without a key, the key is NULL and nothing is stored.
pub struct SaveReply<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) key: Option<&'a str>,
    pub(super) reply: &'a Reply,
}

impl SaveReply<'_> {
    pub fn org(&self) -> &str {
        &self.tenant.org
    }
    pub fn mode(&self) -> &'static str {
        self.tenant.mode.as_str()
    }
    pub fn key(&self) -> Option<&str> {
        self.key
    }
    pub fn status(&self) -> i16 {
        self.reply.status.as_u16() as i16
    }
    pub fn body(&self) -> &[u8] {
        &self.reply.body
    }
    pub fn location(&self) -> Option<&str> {
        self.reply.location.as_deref()
    }
    pub fn etag(&self) -> Option<&str> {
        self.reply.etag.as_deref()
    }
}
