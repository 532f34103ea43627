//! Kills a child saving snapshots to `SledStorage` (durable) at 200 random points
//! (SIGKILL) and checks recovery after each: every snapshot whole, nothing
//! acknowledged lost.

use std::process::Command;

#[test]
fn sled_survives_200_kill_points() {
    let output = Command::new(env!("CARGO_BIN_EXE_theta_crash"))
        .args(["run", "--backend", "sled", "--iterations", "200"])
        .output()
        .expect("running theta_crash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "crash harness failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("crash: 200 kill points, 0 failures"),
        "{stdout}"
    );
    eprintln!("{stdout}");
}

/// `soak` runs kill points until its time is up and reports them like `run`.
#[test]
fn soak_mode_runs_until_its_deadline() {
    let output = Command::new(env!("CARGO_BIN_EXE_theta_crash"))
        .args(["soak", "--backend", "sled", "--seconds", "1", "--seed", "5"])
        .output()
        .expect("running theta_crash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "soak failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
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
