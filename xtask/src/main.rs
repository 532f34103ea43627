//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `test`: the full gate CI runs: fmt check, the architecture check (`arch`), clippy, every test (unit,
//!   integration, doc, trybuild UI, feature-gated suites), then the docs with
//!   warnings denied.
//! - `ui [--bless]`: only the trybuild compile-fail/pass tests; `--bless`
//!   regenerates their `.stderr` files.
//! - `crash --backend fs|fs-buffered|sled --iterations N`: the long SIGKILL crash loop.
//! - `soak [--iterations N]`: the crash loop (`theta_crash run`) against every
//!   backend, N kill points each (default 2000).
//! - `bench [--report-only] [--suite NAME].. [-- CRITERION ARGS]`: the criterion
//!   suites, then `target/bench-report.md` (see the `bench` module).

mod arch;
mod bench;

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
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// The help text.
const USAGE: &str = "usage: cargo xtask <command>
  test                                   fmt check, arch check, clippy, all tests (what CI runs)
  arch                                   theta/src: no persistence in the core, no import circle
  ui [--bless]                           trybuild macro tests; --bless rewrites .stderr files
  crash --backend fs|fs-buffered|sled --iterations N
                                         long SIGKILL crash-recovery loop
  soak [--iterations N]                  crash loop against every backend (default N = 2000)
  bench [--report-only] [--suite NAME].. [-- CRITERION ARGS]
                                         suites (runtime, envelope, fs, sled),
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

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// `cargo xtask test`: the full gate.
fn test() -> Result<()> {
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
    // Suites behind test-only features.
    cargo(
        &[
            "test",
            "-p",
            "theta-persistence-fs",
            "--features",
            "failpoints",
        ],
        &[],
    )?;
    cargo(&["test", "-p", "theta", "--all-features"], &[])?;
    // Docs build without broken links or warnings.
    cargo(
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    Ok(())
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

/// `cargo xtask soak [--iterations N]`: the SIGKILL crash loop against the fs
/// backend (durable, then buffered) and the sled backend, N kill points each.
fn soak(rest: &[String]) -> Result<()> {
    let mut iterations = String::from("2000");
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
            other => bail!("soak: unknown argument {other:?}\n{USAGE}"),
        }
    }
    for backend in ["fs", "fs-buffered", "sled"] {
        theta_crash(&["run", "--backend", backend, "--iterations", &iterations])?;
    }
    Ok(())
}
