//! The limits of the API, named once: the code enforces these values and the OpenAPI document
//! quotes them (`src/openapi/` builds its texts from them; a test there checks the numbers the
//! schema attributes carry). The rules themselves are described in docs/api-rules.md.

/// Largest request body; a larger one is 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// List pages: `limit` is 1 to `PAGE_SIZE_MAX`, `PAGE_SIZE_DEFAULT` when absent.
pub const PAGE_SIZE_DEFAULT: i64 = 50;
pub const PAGE_SIZE_MAX: i64 = 100;

/// Amounts are whole cents from 0 to this (ten billion in major units).
pub const MAX_CENTS: i64 = 1_000_000_000_000;

pub const EMAIL_MAX_CHARS: u64 = 254;
pub const NAME_MAX_CHARS: u64 = 100;
pub const MCCS_MAX: u64 = 1_000;
pub const MERCHANTS_MAX: u64 = 100;
pub const MERCHANT_NAME_MAX_CHARS: usize = 200;

pub const METADATA_MAX_KEYS: usize = 50;
pub const METADATA_KEY_MAX_CHARS: usize = 40;
/// Each metadata value, serialised as JSON.
pub const METADATA_VALUE_MAX_BYTES: usize = 500;

/// Idempotency keys and `org` claims are 1 to this many visible ASCII characters.
pub const TOKEN_MAX_BYTES: usize = 255;
