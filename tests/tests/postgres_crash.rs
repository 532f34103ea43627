//! The SIGKILL crash loop (`theta_crash`) against `PostgresStorage`: 200 kill
//! points of a child saving as fast as it can, each followed by a check that
//! every acknowledged save is there and every stored snapshot is whole.

mod postgres_support;

use std::process::{Command, Output};

#[test]
fn postgres_survives_200_kill_points() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_theta_crash"))
        .args(["run", "--backend", "postgres", "--iterations", "200"])
        .env("THETA_POSTGRES_URL", &url)
        .output()
        .expect("running theta_crash");
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(
        status.success() && stdout.contains("crash: 200 kill points, 0 failures (postgres backend"),
        "theta_crash failed: {status}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    eprintln!("{stdout}");
}
