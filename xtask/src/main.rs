//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `test`: the full gate CI runs: fmt check, the architecture check (`arch`), clippy, every test (unit,
//!   integration, doc, trybuild UI, feature-gated suites), the ledger example's
//!   `--crash` mode on a small fs store with accounts passivated throughout,
//!   then the docs with warnings denied, then a short fuzz run (`fuzz`, 30 s
//!   per target).
//! - `ui [--bless]`: only the trybuild compile-fail/pass tests; `--bless`
//!   regenerates their `.stderr` files.
//! - `crash --backend fs|fs-buffered|sled|postgres --iterations N`: the long SIGKILL crash loop.
//! - `soak [--iterations N] [--fuzz-seconds S]`: the fs power-loss sweep with
//!   16 torn and 16 reordered disks per crash point (`THETA_POWER_SEEDS=16`),
//!   the crash loop (`theta_crash run`) against every backend, N kill points
//!   each (default 2000), `ownership_processes` with 2000 events, then every
//!   fuzz target for S seconds (default 600).
//! - `fuzz [--seconds N] [--target NAME]..`: the libFuzzer targets in `fuzz/`,
//!   N seconds each (default 60; see the `fuzz` module).
//!
//! The postgres suites use the server of `THETA_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Where none answers, `test`,
//! `soak` and `bench` say `postgres suite skipped: no server at …` and go on;
//! with `CI=true` they fail instead.
//! - `bench [--report-only] [--suite NAME].. [-- CRITERION ARGS]`: the criterion
//!   suites, then `target/bench-report.md` (see the `bench` module).

mod arch;
mod bench;
mod fuzz;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// Runs the command named by the first argument.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches one command.
fn run(args: &[String]) -> Result<()> {
    let (cmd, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(c, r)| (c.as_str(), r));
    match cmd {
        "test" => test(),
        "arch" => arch::check(),
        "ui" => ui(rest.iter().any(|a| a == "--bless")),
        "crash" => crash(rest),
        "soak" => soak(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// The help text.
pub(crate) const USAGE: &str = "usage: cargo xtask <command>
  test                                   fmt check, arch check, clippy, all tests, 30 s of
                                         fuzzing per target (what CI runs)
  arch                                   theta/src: no persistence in the core, no import circle
  ui [--bless]                           trybuild macro tests; --bless rewrites .stderr files
  crash --backend fs|fs-buffered|sled|postgres --iterations N
                                         long SIGKILL crash-recovery loop
  soak [--iterations N] [--fuzz-seconds S]
                                         fs power-loss sweep (16 seeds per point), the crash
                                         loop against every backend (default N = 2000),
                                         2000 ownership events on postgres, then S seconds
                                         per fuzz target (default 600)
  fuzz [--seconds N] [--target NAME]..   libFuzzer targets (envelope_decode, journal_replay),
                                         N seconds each (default 60)
  bench [--report-only] [--suite NAME].. [-- CRITERION ARGS]
                                         suites (runtime, envelope, fs, sled, postgres),
                                         then target/bench-report.md; --report-only only
                                         rewrites the report from existing results";

/// Runs `cargo <args>` from the workspace root; fails on a non-zero exit.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let root = workspace_root();
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(&root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The main job's crash mode, small: a worker SIGKILLed while accounts are
/// passivated all the time (a cap of 300 live out of 2,000, 50 ms idle), then
/// every account checked against what was acknowledged. The example exits
/// non-zero on any discrepancy.
fn ledger_crash() -> Result<()> {
    let dir = workspace_root().join("target").join("xtask-ledger-crash");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
    }
    let store = format!("fs:{}", dir.display());
    cargo(
        &[
            "run",
            "-q",
            "-p",
            "theta-tests",
            "--example",
            "ledger",
            "--",
            "--crash",
            "--accounts",
            "2000",
            "--max-live",
            "300",
            "--idle-ms",
            "50",
            "--clients",
            "64",
            "--store",
            &store,
        ],
        &[],
    )?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// The postgres server the suites use.
fn postgres_url() -> String {
    std::env::var("THETA_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `host:port` of a `postgres://` URL (or of `host=.. port=..` settings), for a
/// reachability check; never the password.
fn postgres_address(url: &str) -> String {
    let (mut host, mut port) = ("127.0.0.1".to_owned(), "5432".to_owned());
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let hostport = authority.rsplit('@').next().unwrap_or_default();
        let (h, p) = match hostport.strip_prefix('[') {
            // [v6]:port
            Some(v6) => v6.split_once(']').map_or((v6, ""), |(h, rest)| {
                (h, rest.strip_prefix(':').unwrap_or_default())
            }),
            None => hostport.rsplit_once(':').unwrap_or((hostport, "")),
        };
        if !h.is_empty() {
            host = h.to_owned();
        }
        if !p.is_empty() {
            port = p.to_owned();
        }
    } else {
        for setting in url.split_whitespace() {
            match setting.split_once('=') {
                Some(("host", h)) => host = h.to_owned(),
                Some(("port", p)) => port = p.to_owned(),
                _ => {}
            }
        }
    }
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether the postgres server answers. Outside CI a missing server is one
/// loud line; with `CI=true` it is an error.
pub(crate) fn postgres_available() -> Result<bool> {
    use std::net::ToSocketAddrs;
    let address = postgres_address(&postgres_url());
    let reachable = address.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok()
        })
    });
    if reachable {
        return Ok(true);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!(
            "postgres suite: no server at {address} (THETA_POSTGRES_URL), and CI=true requires one"
        );
    }
    eprintln!(
        "\n!!!!! postgres suite skipped: no server at {address}; set THETA_POSTGRES_URL !!!!!\n"
    );
    Ok(false)
}

/// `cargo xtask test`: the full gate.
fn test() -> Result<()> {
    // Said before the long run; the test binaries check again themselves.
    postgres_available()?;
    cargo(&["fmt", "--all", "--check"], &[])?;
    arch::check()?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    ledger_crash()?;
    // Suites behind test-only features (fs: failpoints, and the power-loss
    // simulator, `sim`).
    cargo(
        &["test", "-p", "theta-persistence-fs", "--all-features"],
        &[],
    )?;
    cargo(&["test", "-p", "theta", "--all-features"], &[])?;
    // Docs build without broken links or warnings.
    cargo(
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // A short coverage-guided run of every fuzz target (about a minute).
    fuzz::fuzz(&fuzz::Options::all(30))
}

/// `cargo xtask ui`: the trybuild tests, optionally re-blessing their output.
fn ui(bless: bool) -> Result<()> {
    let envs: &[(&str, &str)] = if bless {
        &[("TRYBUILD", "overwrite")]
    } else {
        &[]
    };
    cargo(&["test", "-p", "theta-tests", "--test", "ui"], envs)
}

/// Runs the crash harness binary (release build) with `args`.
fn theta_crash(args: &[&str]) -> Result<()> {
    let mut cmd = vec![
        "run",
        "--release",
        "-p",
        "theta-tests",
        "--bin",
        "theta_crash",
        "--",
    ];
    cmd.extend_from_slice(args);
    cargo(&cmd, &[])
}

/// `cargo xtask crash ..`: one crash loop, arguments passed through.
fn crash(rest: &[String]) -> Result<()> {
    let mut args = vec!["run"];
    args.extend(rest.iter().map(String::as_str));
    theta_crash(&args)
}

/// `cargo xtask soak [--iterations N] [--fuzz-seconds S]`: the fs power-loss
/// sweep with more disks per crash point, then the SIGKILL crash loop against
/// the fs backend (durable, then buffered), the sled backend and the postgres
/// backend, N kill points each; the multi-process ownership test on postgres
/// with 2000 events (takeovers, kills, pauses); then S seconds of each fuzz
/// target.
fn soak(rest: &[String]) -> Result<()> {
    let mut iterations = String::from("2000");
    let mut fuzz_seconds = 600;
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                let value = args.next().context("--iterations needs a value")?;
                match value.parse::<u64>() {
                    Ok(n) if n > 0 => iterations = value.clone(),
                    _ => bail!("--iterations expects a positive number, got {value:?}"),
                }
            }
            "--fuzz-seconds" => fuzz_seconds = fuzz::positive(args.next(), "--fuzz-seconds")?,
            other => bail!("soak: unknown argument {other:?}\n{USAGE}"),
        }
    }
    // The power-loss sweep with more torn and reordered disks per crash point.
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "theta-persistence-fs",
            "--features",
            "sim",
            "--test",
            "power_loss",
        ],
        &[("THETA_POWER_SEEDS", "16")],
    )?;
    for backend in ["fs", "fs-buffered", "sled"] {
        theta_crash(&["run", "--backend", backend, "--iterations", &iterations])?;
    }
    if postgres_available()? {
        theta_crash(&["run", "--backend", "postgres", "--iterations", &iterations])?;
        // Ownership across processes: takeovers, SIGKILLs and pauses.
        cargo(
            &[
                "test",
                "-p",
                "theta-tests",
                "--test",
                "ownership_processes",
                "--",
                "--events",
                "2000",
            ],
            &[],
        )?;
    }
    fuzz::fuzz(&fuzz::Options::all(fuzz_seconds))
}

#[cfg(test)]
mod tests {
    use super::postgres_address;

    #[test]
    fn postgres_addresses_come_without_credentials() {
        assert_eq!(
            postgres_address("postgres://postgres@127.0.0.1:5432/postgres"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            postgres_address("postgres://app:s3cret@db.example/orders"),
            "db.example:5432"
        );
        assert_eq!(
            postgres_address("postgresql://u@[::1]:6000/x?sslmode=disable"),
            "[::1]:6000"
        );
        assert_eq!(
            postgres_address("host=10.0.0.9 port=5433 user=app"),
            "10.0.0.9:5433"
        );
    }
}
