//! Kills a child saving snapshots to `FsStorage` at 200 random points (SIGKILL) and
//! checks recovery after each: every snapshot whole, nothing acknowledged lost.

use std::process::Command;

#[test]
fn fs_survives_200_kill_points() {
    let output = Command::new(env!("CARGO_BIN_EXE_theta_crash"))
        .args(["run", "--backend", "fs", "--iterations", "200"])
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
}
