//! Whose data a request may touch: a tenant is an organisation in one mode. Test-mode and
//! live-mode data of one organisation never mix, so every query is scoped by both parts.

use serde::{Deserialize, Serialize};

use crate::limits::TOKEN_MAX_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    /// The mode of a row read across tenants (a `mode` column holds only `test` or `live`).
    pub fn from_stored(text: &str) -> Self {
        if text == "live" {
            Mode::Live
        } else {
            Mode::Test
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant {
    pub org: String,
    pub mode: Mode,
}

impl Tenant {
    /// The value the row-level security policies compare with (see migration 3): each
    /// statement binds it as `app.tenant` before it reads a row.
    pub fn binding(&self) -> String {
        format!("{}/{}", self.mode.as_str(), self.org)
    }
}

/// 1 to [`TOKEN_MAX_BYTES`] visible ASCII characters (0x21–0x7E): the rule for idempotency keys
/// and for the `org` claim, the two strings clients choose that this service writes into keys
/// and logs.
pub fn is_visible_ascii_token(bytes: &[u8]) -> bool {
    (1..=TOKEN_MAX_BYTES).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}
