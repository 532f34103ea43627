//! The storage conformance kit against `PostgresStorage` on the server of
//! `THETA_POSTGRES_URL`, one test per case, each in a schema of its own.

mod postgres_support;

use postgres_support::Pg;

theta::conformance_tests!(match Pg::new() {
    Some(harness) => harness,
    None => return,
});
