//! Kills a child saving snapshots (durably) at 200 random points per backend
//! (SIGKILL) and checks recovery after each: every snapshot whole, each id's stored
//! value at least its last acknowledged one, no temp files left.

use std::process::{Command, Output};

/// Runs the crash harness binary; fails the test with its output unless it exits 0.
fn harness(args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_theta_crash"))
        .args(args)
        .output()
        .expect("running theta_crash");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "theta_crash {args:?} failed: {status}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    eprintln!("{stdout}");
    stdout
}

/// 1,000 for fs (about 15 s): its kills must also land inside checkpoints,
/// whose windows are narrow.
#[test]
fn fs_survives_1000_kill_points() {
    let stdout = harness(&["run", "--backend", "fs", "--iterations", "1000"]);
    assert!(
        stdout.contains("crash: 1000 kill points, 0 failures"),
        "{stdout}"
    );
}

/// Buffered mode skips the sync per write; a process kill (unlike a power loss)
/// must still lose nothing acknowledged.
#[test]
fn fs_buffered_survives_200_kill_points() {
    let stdout = harness(&["run", "--backend", "fs-buffered", "--iterations", "200"]);
    assert!(
        stdout.contains("crash: 200 kill points, 0 failures"),
        "{stdout}"
    );
}

#[test]
fn sled_survives_200_kill_points() {
    let stdout = harness(&["run", "--backend", "sled", "--iterations", "200"]);
    assert!(
        stdout.contains("crash: 200 kill points, 0 failures"),
        "{stdout}"
    );
}

/// `soak` runs kill points until its time is up and reports them like `run`.
#[test]
fn soak_mode_runs_until_its_deadline() {
    let stdout = harness(&["soak", "--backend", "sled", "--seconds", "1", "--seed", "5"]);
    let kills: u64 = stdout
        .split_once("crash: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no kill count in {stdout:?}"));
    assert!(kills >= 1, "{stdout}");
    assert!(
        stdout.contains(" kill points, 0 failures (sled backend"),
        "{stdout}"
    );
}
