//! Shared test helpers: a timeout wrapper for every await. The probe actor
//! (`probe/`), the fault-injecting storage (`fault_storage/`), the proptest
//! configuration (`proptest_support/`) and the postgres server
//! (`postgres_support/`) are modules of their own, declared only by the test
//! binaries that use them.

use std::future::IntoFuture;
use std::time::Duration;

/// Every await in a test goes through this: a hang fails fast instead of stalling CI.
pub async fn within<F: IntoFuture>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}
