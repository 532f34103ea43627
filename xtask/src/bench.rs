//! `cargo xtask bench`: runs the criterion suites and writes `bench-report.md`
//! into the target directory.
//!
//! The report reads criterion's own output: for every benchmark,
//! `<criterion dir>/<benchmark>/new/benchmark.json` (its id and throughput) and
//! `new/estimates.json` (the mean time per iteration, `mean.point_estimate`, in
//! nanoseconds). Each suite is one table; each figure is shown with its ratio to
//! the raw baseline it is measured against (theta's throughput divided by the
//! baseline's: 1.00 means as fast as the baseline, 0.50 half as fast).
//!
//! The criterion directory is `$CRITERION_HOME` if set, else
//! `<target dir>/criterion`, where the target directory is `$CARGO_TARGET_DIR` if
//! set, else `<workspace>/target`; the report goes to `<target dir>/bench-report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{USAGE, cargo, workspace_root};

/// One criterion suite: a bench target of a package, and how its report table is
/// built.
#[derive(Debug)]
struct Suite {
    /// The name `--suite` selects it by.
    name: &'static str,
    /// The package that holds the bench target.
    package: &'static str,
    /// The bench target (`benches/<bench>.rs`).
    bench: &'static str,
    /// The table heading.
    title: &'static str,
    /// What the suite measures, one line under the heading.
    about: &'static str,
    /// The rows: a benchmark and the baseline it is compared with.
    rows: &'static [Row],
}

/// One line of a report table.
#[derive(Debug)]
struct Row {
    /// Criterion's full id of the measured benchmark (`group/function[/value]`).
    id: &'static str,
    /// The full id of its raw baseline, if it has one.
    baseline: Option<&'static str>,
}

/// A row comparing `id` with `baseline`.
const fn vs(id: &'static str, baseline: &'static str) -> Row {
    Row {
        id,
        baseline: Some(baseline),
    }
}

/// A row without a baseline.
const fn alone(id: &'static str) -> Row {
    Row { id, baseline: None }
}

/// The raw fs baseline: temp file, `fsync`, rename, directory `fsync`, one at a time.
const FS_SERIAL: &str = "baseline/temp_fsync_rename_dirfsync/serial";
/// The raw fs read baseline: `std::fs::read` of the same snapshot files, one
/// after the other.
const FS_RAW_READ: &str = "fs-read/raw_std_fs_read/sequential";
/// The raw sled baseline: insert and `flush()`, one at a time.
const SLED_SERIAL: &str = "sled/baseline/raw insert + flush(), serial";

/// Every suite, in report order.
const SUITES: &[Suite] = &[
    Suite {
        name: "messaging",
        package: "theta",
        bench: "messaging",
        title: "Messaging (`theta/benches/messaging.rs`)",
        about: "theta actors against a hand-written tokio task + unbounded channel doing the same work.",
        rows: &[
            vs("tell/theta", "tell/raw_tokio"),
            vs("ask/theta", "ask/raw_tokio"),
            vs("spawn/theta", "spawn/raw_tokio"),
            vs("channel/flume_unbounded", "channel/tokio_unbounded"),
            vs("channel/async_channel_unbounded", "channel/tokio_unbounded"),
        ],
    },
    Suite {
        name: "envelope",
        package: "theta",
        bench: "envelope",
        title: "Snapshot envelope (`theta/benches/envelope.rs`)",
        about: "encode + decode round trip: theta's checked envelope against bare bincode (serde) of the same value.",
        rows: &[
            vs(
                "snapshot_round_trip/theta_envelope/64B",
                "snapshot_round_trip/raw_bincode/64B",
            ),
            vs(
                "snapshot_round_trip/theta_envelope/4KiB",
                "snapshot_round_trip/raw_bincode/4KiB",
            ),
            vs(
                "snapshot_round_trip/theta_envelope/1MiB",
                "snapshot_round_trip/raw_bincode/1MiB",
            ),
        ],
    },
    Suite {
        name: "fs",
        package: "theta-persistence-fs",
        bench: "fs",
        title: "File-system backend (`theta-persistence-fs/benches/fs.rs`)",
        about: "saves of 200-byte snapshots by N concurrent actors; durable = acknowledged after the journal's fdatasync (group commit), owned = the same under ownership claims (epoch-stamped writes). Reads: 10k stored snapshots read back (try_read, try_claim; one after the other and from 64 tasks) against a raw sequential std::fs::read of the same files. Recovery: reading 100k snapshots back, the open of a store of 100k files (it reads every header), respawning 100k actors from them, and the open of a crash-left journal of 100k snapshots (replayed into memory; +checkpoint: until their files are written).",
        rows: &[
            vs("fs/durable/1", FS_SERIAL),
            vs("fs/durable/8", FS_SERIAL),
            vs("fs/durable/64", FS_SERIAL),
            vs("fs/durable/64", "baseline/tokio_fs_write/64"),
            vs("fs/owned/1", FS_SERIAL),
            vs("fs/owned/64", FS_SERIAL),
            vs("fs/buffered/64", "baseline/std_fs_write/serial"),
            alone("fs/read/64"),
            vs("fs-read/try_read/sequential", FS_RAW_READ),
            vs("fs-read/try_read/64-tasks", FS_RAW_READ),
            vs("fs-read/try_claim/sequential", FS_RAW_READ),
            vs("fs-read/try_claim/64-tasks", FS_RAW_READ),
            alone("fs-recovery/read+open/100k"),
            alone("fs-recovery/open/100k"),
            alone("fs-recovery/respawn/100k"),
            alone("fs-recovery/replay-open/100k"),
            alone("fs-recovery/replay-open+checkpoint/100k"),
        ],
    },
    Suite {
        name: "sled",
        package: "theta-persistence-sled",
        bench: "sled",
        title: "sled backend (`theta-persistence-sled/benches/sled.rs`)",
        about: "saves of 256-byte snapshots by N concurrent actors; durable = acknowledged after a flush + fsync (group commit).",
        rows: &[
            vs("sled/saves/durable/1 actors", SLED_SERIAL),
            vs("sled/saves/durable/8 actors", SLED_SERIAL),
            vs("sled/saves/durable/64 actors", SLED_SERIAL),
            vs("sled/saves/buffered/64 actors", SLED_SERIAL),
            alone("sled/reads/1024 snapshots of 256 B"),
            alone("sled/recovery/list + read + envelope::open of 100k"),
        ],
    },
];

/// `cargo xtask bench [--report-only] [--suite NAME].. [-- CRITERION ARGS]`.
pub(crate) fn run(rest: &[String]) -> Result<()> {
    let (ours, criterion_args) = match rest.iter().position(|a| a == "--") {
        Some(split) => (&rest[..split], &rest[split + 1..]),
        None => (rest, &[][..]),
    };
    let mut report_only = false;
    let mut selected: Vec<&Suite> = Vec::new();
    let mut args = ours.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--report-only" => report_only = true,
            "--suite" => {
                let name = args.next().context("--suite needs a name")?;
                let suite = SUITES
                    .iter()
                    .find(|s| s.name == name.as_str())
                    .with_context(|| {
                        format!(
                            "unknown suite {name:?} (known: {})",
                            SUITES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                        )
                    })?;
                selected.push(suite);
            }
            other => bail!("bench: unknown argument {other:?}\n{USAGE}"),
        }
    }
    if selected.is_empty() {
        selected = SUITES.iter().collect();
    }

    if !report_only {
        for suite in &selected {
            let mut cargo_args = vec!["bench", "-p", suite.package, "--bench", suite.bench];
            if !criterion_args.is_empty() {
                cargo_args.push("--");
                cargo_args.extend(criterion_args.iter().map(String::as_str));
            }
            cargo(&cargo_args, &[])?;
        }
    }

    let target = target_dir();
    let criterion = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("criterion"));
    let results = read_results(&criterion)?;
    if results.is_empty() {
        bail!(
            "no criterion results in {}: run `cargo xtask bench` first",
            criterion.display()
        );
    }
    // The report always covers every suite; one not run shows what is on disk.
    let report = render(&results, &criterion);
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    let path = target.join("bench-report.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// What criterion knows how much work one iteration does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Throughput {
    /// Elements (messages, saves, snapshots) per iteration.
    Elements(u64),
    /// Bytes per iteration.
    Bytes(u64),
}

/// One benchmark's latest result.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Mean time per iteration, in nanoseconds.
    mean_ns: f64,
    /// Work per iteration, if the benchmark declared it.
    throughput: Option<Throughput>,
}

impl Measured {
    /// Work per second (elements or bytes), if the throughput is known.
    fn per_second(&self) -> Option<f64> {
        let amount = match self.throughput? {
            Throughput::Elements(n) | Throughput::Bytes(n) => n as f64,
        };
        (self.mean_ns > 0.0).then(|| amount * 1e9 / self.mean_ns)
    }

    /// Mean time per element (or per iteration without a throughput), in ns.
    fn ns_per_unit(&self) -> f64 {
        match self.throughput {
            Some(Throughput::Elements(n)) if n > 0 => self.mean_ns / n as f64,
            _ => self.mean_ns,
        }
    }
}

/// Reads every `*/new/benchmark.json` under `dir`, keyed by criterion's full id.
fn read_results(dir: &Path) -> Result<BTreeMap<String, Measured>> {
    let mut results = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(results);
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("reading {}", current.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", current.display()))?
                .path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some((id, measured)) = read_one(&path)? {
                    results.insert(id, measured);
                }
            } else {
                pending.push(path);
            }
        }
    }
    Ok(results)
}

/// Reads one criterion `new/` directory: `None` if it has no benchmark.json.
fn read_one(new: &Path) -> Result<Option<(String, Measured)>> {
    let benchmark_path = new.join("benchmark.json");
    let estimates_path = new.join("estimates.json");
    if !benchmark_path.is_file() || !estimates_path.is_file() {
        return Ok(None);
    }
    let benchmark = read_json(&benchmark_path)?;
    let estimates = read_json(&estimates_path)?;
    let id = benchmark["full_id"]
        .as_str()
        .with_context(|| format!("{}: no full_id", benchmark_path.display()))?
        .to_string();
    let mean_ns = estimates["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{}: no mean.point_estimate", estimates_path.display()))?;
    let throughput = match &benchmark["throughput"] {
        serde_json::Value::Object(map) => map.iter().find_map(|(kind, n)| {
            let n = n.as_u64()?;
            match kind.as_str() {
                "Elements" => Some(Throughput::Elements(n)),
                "Bytes" | "BytesDecimal" => Some(Throughput::Bytes(n)),
                _ => None,
            }
        }),
        _ => None,
    };
    Ok(Some((
        id,
        Measured {
            mean_ns,
            throughput,
        },
    )))
}

/// Parses a JSON file.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The whole report.
fn render(results: &BTreeMap<String, Measured>, criterion: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# theta benchmark report\n");
    let _ = writeln!(
        out,
        "- date: {}",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let _ = writeln!(out, "- machine: {} ({} CPUs)", cpu_model(), cpus());
    let _ = writeln!(out, "- kernel: {}", kernel());
    let _ = writeln!(out, "- rustc: {}", command_line("rustc", &["--version"]));
    let _ = writeln!(
        out,
        "- commit: {}",
        command_line("git", &["rev-parse", "--short", "HEAD"])
    );
    let _ = writeln!(
        out,
        "- source: criterion results in `{}`",
        criterion.display()
    );
    let _ = writeln!(
        out,
        "\nFigures are criterion's mean per iteration, turned into a rate with the \
         benchmark's declared throughput. **ratio** = the figure's rate ÷ its \
         baseline's rate (1.00 = as fast as the raw baseline; above 1 = faster, \
         e.g. through group commit).\n"
    );
    for suite in SUITES {
        render_suite(&mut out, suite, results);
    }
    out
}

/// One suite's table.
fn render_suite(out: &mut String, suite: &Suite, results: &BTreeMap<String, Measured>) {
    let _ = writeln!(out, "## {}\n", suite.title);
    let _ = writeln!(out, "{}\n", suite.about);
    let _ = writeln!(
        out,
        "| benchmark | rate | time | baseline | baseline rate | ratio |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|");
    let mut missing = 0;
    for row in suite.rows {
        let measured = results.get(row.id);
        let base = row.baseline.and_then(|b| results.get(b));
        if measured.is_none() {
            missing += 1;
        }
        let ratio = match (
            measured.and_then(Measured::per_second),
            base.and_then(Measured::per_second),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "—".to_string(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            row.id,
            measured.map_or_else(not_measured, rate),
            measured.map_or_else(not_measured, time),
            row.baseline
                .map_or_else(|| "—".to_string(), |b| format!("`{b}`")),
            match (row.baseline, base) {
                (None, _) => "—".to_string(),
                (Some(_), None) => not_measured(),
                (Some(_), Some(b)) => rate(b),
            },
            ratio,
        );
    }
    if missing == suite.rows.len() {
        let _ = writeln!(
            out,
            "\n_No results: run `cargo xtask bench --suite {}`._",
            suite.name
        );
    }
    let _ = writeln!(out);
}

/// The cell of a benchmark without results.
fn not_measured() -> String {
    "not measured".to_string()
}

/// A rate cell: elements/s or bytes/s, with a unit prefix.
fn rate(m: &Measured) -> String {
    match (m.throughput, m.per_second()) {
        (Some(Throughput::Elements(_)), Some(per_s)) => format!("{}/s", si(per_s)),
        (Some(Throughput::Bytes(_)), Some(per_s)) => format!("{}/s", bytes(per_s)),
        _ => "—".to_string(),
    }
}

/// A time cell: the mean per element (per iteration without a throughput).
fn time(m: &Measured) -> String {
    let per = match m.throughput {
        Some(Throughput::Elements(n)) if n > 1 => " / elem",
        _ => "",
    };
    format!("{}{per}", duration(m.ns_per_unit()))
}

/// `1234567.0` → `1.235 M`; below 1000 no prefix.
fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.3} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.3} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.3} K", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// Bytes per second with a binary prefix.
fn bytes(x: f64) -> String {
    const KIB: f64 = 1024.0;
    if x >= KIB * KIB * KIB {
        format!("{:.2} GiB", x / (KIB * KIB * KIB))
    } else if x >= KIB * KIB {
        format!("{:.2} MiB", x / (KIB * KIB))
    } else if x >= KIB {
        format!("{:.2} KiB", x / KIB)
    } else {
        format!("{x:.0} B")
    }
}

/// Nanoseconds in the most readable unit.
fn duration(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// `nproc`, or what std says if it is not installed.
fn cpus() -> String {
    let nproc = command_line("nproc", &[]);
    if nproc != "unknown" {
        return nproc;
    }
    std::thread::available_parallelism().map_or_else(|_| "unknown".to_string(), |n| n.to_string())
}

/// The kernel release.
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| command_line("uname", &["-sr"]))
}

/// The first line a command prints, or `unknown`.
fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::*;

    /// Rates and times get readable units.
    #[test]
    fn rates_and_times_are_readable() {
        let m = Measured {
            mean_ns: 1e6,
            throughput: Some(Throughput::Elements(1000)),
        };
        assert_eq!(rate(&m), "1.000 M/s");
        assert_eq!(time(&m), "1.000 µs / elem");
        let b = Measured {
            mean_ns: 1e9,
            throughput: Some(Throughput::Bytes(1 << 20)),
        };
        assert_eq!(rate(&b), "1.00 MiB/s");
        assert_eq!(si(12.0), "12.0");
    }
}
