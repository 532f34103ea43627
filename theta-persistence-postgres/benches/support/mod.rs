//! What the PostgreSQL benchmarks share.

/// The server: `THETA_POSTGRES_URL`, else the local one with trust
/// authentication.
pub fn url() -> String {
    std::env::var("THETA_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}
