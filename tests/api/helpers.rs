//! The old name of `support`, while the test files move over to it.

pub use crate::support::logs::test_log_dir;
pub use crate::support::*;
