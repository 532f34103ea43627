//! `cargo xtask fuzz [--seconds N] [--target NAME]..`: coverage-guided fuzzing
//! of the targets in `fuzz/` with libFuzzer, on the stable toolchain.
//!
//! The targets are built the way `cargo fuzz build -s none` builds them (no
//! sanitizer, so no nightly), with plain `cargo build` and cargo-fuzz's
//! RUSTFLAGS: cargo-fuzz need not be installed. libfuzzer-sys compiles
//! libFuzzer's C++ sources, so a C++ compiler must be present.
//!
//! Each target then runs for the time budget (default 60 s) with
//! `-malloc_limit_mb=64` (one allocation of more than 64 MiB is a finding, even
//! when its memory is never touched), `-rss_limit_mb=2048` and `-timeout=10`,
//! starting from `fuzz/corpus/<target>/` (the seeds `seed-*` are kept in git;
//! what libFuzzer adds there, and `fuzz/artifacts/`, are ignored). A crash, an
//! out-of-memory or a timeout is saved under `fuzz/artifacts/<target>/`; the
//! command names the file, and fails. Without a finding it reports each
//! target's executions (libFuzzer's `stat::number_of_executed_units`).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The targets, in the order they run.
pub(crate) const TARGETS: &[&str] = &["envelope_decode", "journal_replay"];

/// The budget per target when none is given.
const DEFAULT_SECONDS: u64 = 60;

/// What `cargo fuzz build -s none` passes to rustc (cargo-fuzz's
/// `src/project.rs`), on Linux: sanitizer-coverage instrumentation for
/// libFuzzer, `--cfg fuzzing`, and debug assertions.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
    "-Cdebug-assertions",
];

/// The libFuzzer options of every run (besides the time budget and paths).
const LIBFUZZER_OPTIONS: &[&str] = &[
    "-malloc_limit_mb=64",
    "-rss_limit_mb=2048",
    "-timeout=10",
    "-print_final_stats=1",
];

/// What `fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Seconds per target.
    pub(crate) seconds: u64,
    /// The targets to run, in order.
    pub(crate) targets: Vec<String>,
}

impl Options {
    /// Every target, `seconds` each.
    pub(crate) fn all(seconds: u64) -> Self {
        Self {
            seconds,
            targets: TARGETS.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    /// Parses `[--seconds N] [--target NAME]..`.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut seconds = DEFAULT_SECONDS;
        let mut targets = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => seconds = positive(args.next(), "--seconds")?,
                "--target" => {
                    let name = args.next().context("--target needs a name")?;
                    if !TARGETS.contains(&name.as_str()) {
                        bail!(
                            "fuzz: unknown target {name:?} (the targets: {})",
                            TARGETS.join(", ")
                        );
                    }
                    targets.push(name.clone());
                }
                other => bail!("fuzz: unknown argument {other:?}\n{}", crate::USAGE),
            }
        }
        if targets.is_empty() {
            return Ok(Self::all(seconds));
        }
        Ok(Self { seconds, targets })
    }
}

/// A positive number given for `flag`.
pub(crate) fn positive(value: Option<&String>, flag: &str) -> Result<u64> {
    let value = value.with_context(|| format!("{flag} needs a value"))?;
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} expects a positive number, got {value:?}"),
    }
}

/// `cargo xtask fuzz ..`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    fuzz(&Options::parse(args)?)
}

/// Builds the targets of `options`, runs each for its budget, prints a summary;
/// fails if any run found something (naming the artifacts) or failed.
pub(crate) fn fuzz(options: &Options) -> Result<()> {
    let dir = crate::workspace_root().join("fuzz");
    require_cxx()?;
    let triple = host_triple()?;
    build(&dir, &triple, &options.targets)?;
    let mut outcomes = Vec::new();
    for target in &options.targets {
        let binary = dir
            .join("target")
            .join(&triple)
            .join("release")
            .join(target);
        outcomes.push(run_target(&dir, &binary, target, options.seconds)?);
    }
    eprintln!("\nfuzz summary ({} s per target):", options.seconds);
    for o in &outcomes {
        eprintln!("  {}", o.summary());
    }
    let found: Vec<&Outcome> = outcomes.iter().filter(|o| !o.clean()).collect();
    if found.is_empty() {
        return Ok(());
    }
    for o in &found {
        eprintln!("\n{}: {}", o.target, o.problem());
        for line in &o.tail {
            eprintln!("  | {line}");
        }
        if let Some(artifact) = &o.artifact {
            eprintln!("  reproduce: {} {}", o.binary.display(), artifact.display());
        }
    }
    bail!(
        "fuzz: {} of {} targets found a problem: {}",
        found.len(),
        outcomes.len(),
        found
            .iter()
            .map(|o| o.target.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// libFuzzer's C++ sources need a C++ compiler (`CXX`, else `c++`).
fn require_cxx() -> Result<()> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let found = Command::new(&cxx)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        bail!(
            "fuzz: no C++ compiler (`{cxx}`): libfuzzer-sys compiles libFuzzer's C++ sources; install g++ or clang, or set CXX"
        );
    }
    Ok(())
}

/// The host's target triple (`rustc -vV`): the targets are built with
/// `--target` so that the instrumentation flags stay off build scripts and
/// proc macros.
fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {rustc} -vV"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .with_context(|| format!("no `host:` line in `{rustc} -vV`: {text}"))
}

/// The RUSTFLAGS of the fuzz build: cargo-fuzz's, then the caller's (which so
/// take precedence, as with cargo-fuzz).
fn rustflags() -> String {
    let mut flags = RUSTFLAGS.join(" ");
    if let Ok(extra) = std::env::var("RUSTFLAGS")
        && !extra.trim().is_empty()
    {
        flags.push(' ');
        flags.push_str(&extra);
    }
    flags
}

/// `cargo build --release` of the targets, instrumented, into `fuzz/target`.
fn build(dir: &Path, triple: &str, targets: &[String]) -> Result<()> {
    let mut args = vec![
        "build".to_owned(),
        "--manifest-path".to_owned(),
        dir.join("Cargo.toml").display().to_string(),
        "--target-dir".to_owned(),
        dir.join("target").display().to_string(),
        "--release".to_owned(),
        "--config".to_owned(),
        "profile.release.debug=\"line-tables-only\"".to_owned(),
        "--target".to_owned(),
        triple.to_owned(),
    ];
    for target in targets {
        args.push("--bin".to_owned());
        args.push(target.clone());
    }
    eprintln!(
        "xtask: cargo {} (RUSTFLAGS as cargo fuzz build -s none)",
        args.join(" ")
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .env("RUSTFLAGS", rustflags())
        .status()
        .context("running cargo build for the fuzz targets")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    Ok(())
}

/// What one target's run came to.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    target: String,
    binary: PathBuf,
    seconds: u64,
    /// From libFuzzer's final stats (or its `Done N runs` line).
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    /// The newest coverage and corpus figures libFuzzer printed.
    progress: Progress,
    /// The file a finding was saved to.
    artifact: Option<PathBuf>,
    /// What libFuzzer said the finding was (`deadly signal`, `out-of-memory ..`).
    finding: Option<String>,
    /// A panic's `panicked at` line was the last one: its message follows.
    panic_message_next: bool,
    /// The process's exit status, when not success.
    failed: Option<String>,
    /// The last lines of the run's output.
    tail: Vec<String>,
    log: PathBuf,
}

impl Outcome {
    fn clean(&self) -> bool {
        self.artifact.is_none() && self.finding.is_none() && self.failed.is_none()
    }

    fn problem(&self) -> String {
        let what = self
            .finding
            .clone()
            .or_else(|| self.failed.clone())
            .unwrap_or_default();
        match &self.artifact {
            Some(a) => format!("{what}; input saved to {}", a.display()),
            None => format!("{what}; no input saved (see {})", self.log.display()),
        }
    }

    fn summary(&self) -> String {
        let executions = self
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let rate = self
            .exec_per_sec
            .map_or_else(String::new, |r| format!(" ({r}/s)"));
        let findings = if self.clean() {
            "no findings".to_owned()
        } else {
            format!("FINDING: {}", self.problem())
        };
        format!(
            "{:<16} {} s, {executions} executions{rate}, coverage {}, corpus {}; {findings}",
            self.target, self.seconds, self.progress.cov, self.progress.corpus
        )
    }
}

/// The figures of libFuzzer's status lines (`#N NEW cov: C ft: F corp: K/..`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) executions: u64,
    pub(crate) cov: u64,
    pub(crate) corpus: u64,
    pub(crate) exec_per_sec: u64,
}

/// The figures of a libFuzzer status line, if it is one.
pub(crate) fn parse_status(line: &str) -> Option<Progress> {
    let rest = line.strip_prefix('#')?;
    let (count, rest) = rest.split_once(|c: char| c.is_whitespace())?;
    let executions = count.parse().ok()?;
    let mut progress = Progress {
        executions,
        ..Progress::default()
    };
    let mut words = rest.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "cov:" => progress.cov = words.next()?.parse().ok()?,
            "corp:" => {
                progress.corpus = words.next()?.split('/').next()?.parse().ok()?;
            }
            "exec/s:" => progress.exec_per_sec = words.next()?.parse().ok()?,
            _ => {}
        }
    }
    Some(progress)
}

/// The value of a final-stats line `stat::<name>: N`.
pub(crate) fn parse_stat(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix("stat::")?.strip_prefix(name)?;
    rest.strip_prefix(':')?.trim().parse().ok()
}

/// The count of a `Done N runs in S second(s)` line.
pub(crate) fn parse_done(line: &str) -> Option<u64> {
    line.strip_prefix("Done ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs one target for `seconds`, showing progress; its outcome.
fn run_target(dir: &Path, binary: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let log_path = dir.join("target").join(format!("fuzz-{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut prefix = artifacts.display().to_string();
    prefix.push('/');
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (corpus {}, log {})",
        corpus.display(),
        log_path.display()
    );
    let mut child = Command::new(binary)
        .arg(format!("-max_total_time={seconds}"))
        .args(LIBFUZZER_OPTIONS)
        .arg(format!("-artifact_prefix={prefix}"))
        .arg(&corpus)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    // libFuzzer reports on stderr; the target's own output (stdout) goes to the
    // log as well.
    let stdout = child.stdout.take().context("the child's stdout")?;
    let echo = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let stderr = child.stderr.take().context("the child's stderr")?;
    let mut outcome = Outcome {
        target: target.to_owned(),
        binary: binary.to_path_buf(),
        seconds,
        log: log_path.clone(),
        ..Outcome::default()
    };
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_shown = Instant::now();
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the fuzzer's output")?;
        writeln!(log, "{line}").context("writing the fuzz log")?;
        observe(&mut outcome, &line);
        tail.push_back(line);
        if tail.len() > 40 {
            tail.pop_front();
        }
        let every = if terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        if last_shown.elapsed() >= every {
            last_shown = Instant::now();
            let p = &outcome.progress;
            let shown = format!(
                "fuzz {target}: {:>3} s / {seconds} s, {} executions ({}/s), coverage {}, corpus {}",
                started.elapsed().as_secs(),
                p.executions,
                p.exec_per_sec,
                p.cov,
                p.corpus
            );
            if terminal {
                eprint!("\r{shown}\x1b[K");
            } else {
                eprintln!("{shown}");
            }
        }
    }
    if terminal {
        eprintln!();
    }
    let status = child.wait().context("waiting for the fuzzer")?;
    for line in echo.join().unwrap_or_default() {
        writeln!(log, "{line}").context("writing the fuzz log")?;
    }
    remove_scratch(child.id());
    if outcome.executions.is_none() {
        outcome.executions = Some(outcome.progress.executions).filter(|n| *n > 0);
    }
    if !status.success() {
        outcome.failed = Some(format!("the fuzzer exited with {status}"));
    } else if outcome.executions.is_none() {
        outcome.failed = Some("libFuzzer reported no executions".to_owned());
    }
    if !outcome.clean() {
        outcome.tail = tail.into_iter().collect();
    }
    eprintln!("xtask: {}", outcome.summary());
    Ok(outcome)
}

/// Updates `outcome` with what one line of libFuzzer's output says.
fn observe(outcome: &mut Outcome, line: &str) {
    if std::mem::take(&mut outcome.panic_message_next)
        && let Some(finding) = &mut outcome.finding
    {
        finding.push(' ');
        finding.push_str(line.trim());
        return;
    }
    if let Some(p) = parse_status(line) {
        outcome.progress = p;
    } else if let Some(n) = parse_stat(line, "number_of_executed_units") {
        outcome.executions = Some(n);
    } else if let Some(n) = parse_stat(line, "average_exec_per_sec") {
        outcome.exec_per_sec = Some(n);
    } else if let Some(n) = parse_done(line) {
        outcome.executions.get_or_insert(n);
    } else if let Some(path) = line
        .split_once("Test unit written to ")
        .map(|(_, p)| p.trim())
    {
        outcome.artifact = Some(PathBuf::from(path));
    } else if let Some((_, what)) = line.split_once("ERROR: libFuzzer: ") {
        outcome
            .finding
            .get_or_insert_with(|| what.trim().to_owned());
    } else if line.contains("panicked at") && outcome.finding.is_none() {
        outcome.finding = Some(line.trim().to_owned());
        outcome.panic_message_next = true;
    }
}

/// Removes the store directories the journal target of process `pid` left
/// (it writes them under `/dev/shm`, else the temp directory, named after its
/// pid, and has no chance to remove them when libFuzzer exits).
fn remove_scratch(pid: u32) {
    let name = format!("theta-fuzz-journal-{pid}");
    for root in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let _ = std::fs::remove_dir_all(root.join(&name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_status_lines_and_final_stats_parse() {
        assert_eq!(
            parse_status(
                "#4096\tpulse  cov: 812 ft: 1999 corp: 64/9031b lim: 43 exec/s: 2048 rss: 61Mb"
            ),
            Some(Progress {
                executions: 4096,
                cov: 812,
                corpus: 64,
                exec_per_sec: 2048
            })
        );
        assert_eq!(
            parse_status("#2\tINITED cov: 5 ft: 6 corp: 1/1b exec/s: 0 rss: 30Mb").map(|p| (
                p.executions,
                p.cov,
                p.corpus
            )),
            Some((2, 5, 1))
        );
        assert_eq!(parse_status("INFO: Seed: 1"), None);
        assert_eq!(
            parse_stat(
                "stat::number_of_executed_units: 123456",
                "number_of_executed_units"
            ),
            Some(123_456)
        );
        assert_eq!(
            parse_stat(
                "stat::average_exec_per_sec:     2057",
                "average_exec_per_sec"
            ),
            Some(2057)
        );
        assert_eq!(
            parse_stat("stat::new_units_added: 3", "number_of_executed_units"),
            None
        );
        assert_eq!(parse_done("Done 98765 runs in 61 second(s)"), Some(98_765));
    }

    #[test]
    fn a_crash_names_its_artifact() {
        let mut o = Outcome::default();
        observe(
            &mut o,
            "thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:",
        );
        observe(&mut o, "the open holds something else");
        observe(&mut o, "==7== ERROR: libFuzzer: deadly signal");
        observe(
            &mut o,
            "artifact_prefix='fuzz/artifacts/x/'; Test unit written to fuzz/artifacts/x/crash-ab12",
        );
        assert!(!o.clean());
        assert_eq!(
            o.artifact,
            Some(PathBuf::from("fuzz/artifacts/x/crash-ab12"))
        );
        assert!(
            o.problem()
                .contains("panicked at fuzz_targets/x.rs:3:5: the open holds something else"),
            "{}",
            o.problem()
        );
        let mut oom = Outcome::default();
        observe(
            &mut oom,
            "==9== ERROR: libFuzzer: out-of-memory (malloc(100000000))",
        );
        assert_eq!(
            oom.finding.as_deref(),
            Some("out-of-memory (malloc(100000000))")
        );
    }

    #[test]
    fn options_parse() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::all(60));
        let args: Vec<String> = ["--seconds", "5", "--target", "journal_replay"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            Options::parse(&args).unwrap(),
            Options {
                seconds: 5,
                targets: vec!["journal_replay".to_owned()]
            }
        );
        assert!(Options::parse(&["--target".to_owned(), "nope".to_owned()]).is_err());
        assert!(Options::parse(&["--seconds".to_owned(), "0".to_owned()]).is_err());
    }
}
