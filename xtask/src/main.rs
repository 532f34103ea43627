//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `test`: the full gate CI runs: fmt check, clippy, every test (unit,
//!   integration, doc, trybuild UI, feature-gated suites).
//! - `ui [--bless]`: only the trybuild compile-fail/pass tests; `--bless`
//!   regenerates their `.stderr` files.
//! - `crash --backend fs|sled --iterations N`: the long SIGKILL crash loop.
//! - `bench`: the criterion suites.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

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

fn run(args: &[String]) -> Result<()> {
    let (cmd, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(c, r)| (c.as_str(), r));
    match cmd {
        "test" => test(),
        "ui" => ui(rest.iter().any(|a| a == "--bless")),
        "crash" => crash(rest),
        "bench" => bench(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

const USAGE: &str = "usage: cargo xtask <command>
  test                                   fmt check, clippy, all tests (what CI runs)
  ui [--bless]                           trybuild macro tests; --bless rewrites .stderr files
  crash --backend fs|sled --iterations N long SIGKILL crash-recovery loop
  bench                                  criterion benchmarks";

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

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

fn test() -> Result<()> {
    cargo(&["fmt", "--all", "--check"], &[])?;
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
    Ok(())
}

fn ui(bless: bool) -> Result<()> {
    let envs: &[(&str, &str)] = if bless {
        &[("TRYBUILD", "overwrite")]
    } else {
        &[]
    };
    cargo(&["test", "-p", "theta-tests", "--test", "ui"], envs)
}

fn crash(rest: &[String]) -> Result<()> {
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "theta-tests",
        "--bin",
        "theta_crash",
        "--",
        "run",
    ];
    args.extend(rest.iter().map(String::as_str));
    cargo(&args, &[])
}

fn bench(rest: &[String]) -> Result<()> {
    let mut args = vec!["bench", "--workspace"];
    if !rest.is_empty() {
        args.push("--");
        args.extend(rest.iter().map(String::as_str));
    }
    cargo(&args, &[])
}
