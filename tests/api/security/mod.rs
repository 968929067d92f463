//! Token attacks and tenant isolation.
//!
//! The `auth` tests cover, and these do not repeat: no Authorization header; malformed headers
//! ("", "Bearer", "Bearer ", "Bearer garbage", "a.b.c", "a.b", "...", Basic credentials, a token
//! without a scheme, two tokens, four parts, non-JSON parts); two Authorization headers;
//! correctly signed claims of the wrong shape (mode, missing or empty org); expiry (an hour ago,
//! 90 s ago, no exp) and the 30 s leeway; a token signed with another secret; a payload swapped
//! for another tenant's; a stripped and a bit-flipped signature; `alg: none` in four spellings,
//! with and without a signature; unknown kids (other, "", DEV, "dev ", ../dev); HS384/HS512
//! tokens for the HS256 key; scopes; cross-org and cross-mode 404s of one customer.
//!
//! Added here: keys and algorithms (`algorithms`); `nbf`, `iss`, `aud` and ill-typed claims
//! (`claims`); oversized tokens, in-place edits, non-JWS headers and garbage around a valid token
//! (`tampering`); and tenant isolation as a randomized, seeded workload of four tenants
//! (`isolation`).

mod algorithms;
mod claims;
mod isolation;
mod tampering;
