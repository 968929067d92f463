//! Per-tenant rate limits: a token bucket (GCRA, from `governor`) per (org, mode), per
//! instance. Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a
//! request over the limit gets 429 `rate_limited` with `Retry-After`.

use std::num::NonZeroU32;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::configuration::RateLimitSettings;
use crate::error::ApiError;
use crate::tenant::Tenant;

type Limiter =
    RateLimiter<Tenant, DefaultKeyedStateStore<Tenant>, DefaultClock, StateInformationMiddleware>;

pub struct RateLimits {
    limiter: Limiter,
    per_second: u32,
    burst: u32,
}

/// What the response headers say about the caller's bucket.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
}

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl RateLimits {
    /// `None` when rate limiting is switched off.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        let per_second = NonZeroU32::new(settings.per_second)?;
        let burst = NonZeroU32::new(settings.burst)?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_second: per_second.get(),
            burst: burst.get(),
        })
    }

    /// Takes one token from the tenant's bucket.
    pub fn check(&self, tenant: &Tenant) -> Result<Allowance, (Allowance, ApiError)> {
        match self.limiter.check_key(tenant) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // Seconds until the bucket is full again.
                let missing = u64::from(self.burst.saturating_sub(remaining));
                Ok(Allowance {
                    limit: self.burst,
                    remaining,
                    reset_secs: missing.div_ceil(u64::from(self.per_second)),
                })
            }
            Err(not_until) => {
                // The limiter's own clock: a new `DefaultClock` queries the CPU (CPUID, for its
                // time-stamp counter) on every construction, a tenth of the CPU of a refused
                // request in a profile.
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                crate::metrics::rate_limited();
                let allowance = Allowance {
                    limit: self.burst,
                    remaining: 0,
                    reset_secs: retry_after_secs,
                };
                Err((allowance, ApiError::RateLimited { retry_after_secs }))
            }
        }
    }

    /// Forgets buckets that are full again, so idle tenants cost no memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

impl Allowance {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_secs));
    }
}
