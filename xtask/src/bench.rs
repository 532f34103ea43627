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

/// A bench target that measures its own baselines (harness = false, interleaved
/// rounds, medians) and writes its table to `<target dir>/theta-bench/<name>.md`;
/// the report includes that table as it is.
#[derive(Debug)]
struct TableSuite {
    /// The name `--suite` selects it by (also its table's file name).
    name: &'static str,
    /// The package that holds the bench target.
    package: &'static str,
    /// The bench target (`benches/<bench>.rs`).
    bench: &'static str,
    /// The table heading.
    title: &'static str,
    /// What the suite measures, one line under the heading.
    about: &'static str,
}

/// The self-measuring suites, in report order (before the criterion suites).
const TABLE_SUITES: &[TableSuite] = &[
    TableSuite {
        name: "runtime",
        package: "theta",
        bench: "runtime",
        title: "Actor runtime (`theta/benches/runtime.rs`)",
        about: "theta next to a bare tokio task + unbounded channel + oneshot doing the same work, \
                interleaved in one process, medians of 5 rounds; memory in fresh child processes \
                (resident-set growth per live actor).",
    },
    TableSuite {
        name: "recovery",
        package: "theta-tests",
        bench: "recovery",
        title: "Recovery and virtual actors (`tests/benches/recovery.rs`)",
        about: "10,000 stored actors respawned (one at a time, 64 at a time, through a \
                VirtualActors handle) and asked once, on fs and sled, next to std::fs::read + \
                tokio::spawn of the same snapshots; a hot set through VirtualActors next to \
                direct ActorRef asks; with THETA_BENCH_MILLION=1, a million ids through a \
                handle with 1 s idle passivation. Medians of 3 rounds.",
    },
    TableSuite {
        name: "postgres-latency",
        package: "theta-persistence-postgres",
        bench: "latency",
        title: "PostgreSQL save latency and group commit (`theta-persistence-postgres/benches/latency.rs`)",
        about: "on the server of THETA_POSTGRES_URL, synchronous_commit = on, 256-byte snapshots, \
                interleaved with raw tokio-postgres in one run (rotating order, medians): one \
                actor's save (unowned, owned) against one prepared single-row upsert; one save \
                by each of 64 actors at once (unowned, owned) against a serial loop of 64 raw \
                upserts. Targets: 1 actor ≤ 1.2× the upsert; 64 actors ≥ 10× the loop's rate; \
                owned ≤ 1.1× unowned.",
    },
];

/// The raw postgres baseline: one prepared single-row upsert at a time.
const PG_UPSERT: &str = "postgres/baseline/raw upsert/serial";
/// The raw postgres read baseline: `SELECT .. WHERE id = $1` of 100k rows, one at a time.
const PG_SELECT: &str = "postgres/recovery/raw select loop/100k";

/// The envelope suite's rows: per value, each codec + compression against its
/// bare codec, MessagePack against bincode, and the 64-byte target rows.
macro_rules! envelope_rows {
    ($($value:literal),*) => {
        &[
            $(
                vs(concat!("snapshot_round_trip/bincode+none/", $value), concat!("snapshot_round_trip/bare_bincode/", $value)),
                vs(concat!("snapshot_round_trip/bincode+lz4/", $value), concat!("snapshot_round_trip/bare_bincode/", $value)),
                vs(concat!("snapshot_round_trip/bincode+zstd/", $value), concat!("snapshot_round_trip/bare_bincode/", $value)),
                vs(concat!("snapshot_round_trip/bare_msgpack/", $value), concat!("snapshot_round_trip/bare_bincode/", $value)),
                vs(concat!("snapshot_round_trip/msgpack+none/", $value), concat!("snapshot_round_trip/bare_msgpack/", $value)),
                vs(concat!("snapshot_round_trip/msgpack+lz4/", $value), concat!("snapshot_round_trip/bare_msgpack/", $value)),
                vs(concat!("snapshot_round_trip/msgpack+zstd/", $value), concat!("snapshot_round_trip/bare_msgpack/", $value)),
            )*
            vs("snapshot_round_trip/bincode+lz4/64B", "snapshot_round_trip/bincode+none/64B"),
            vs("snapshot_round_trip/bincode+zstd/64B", "snapshot_round_trip/bincode+none/64B"),
            vs("snapshot_round_trip/msgpack+lz4/64B", "snapshot_round_trip/msgpack+none/64B"),
            vs("snapshot_round_trip/msgpack+zstd/64B", "snapshot_round_trip/msgpack+none/64B"),
        ]
    };
}

/// Every suite, in report order.
const SUITES: &[Suite] = &[
    Suite {
        name: "envelope",
        package: "theta",
        bench: "envelope",
        title: "Snapshot envelope (`theta/benches/envelope.rs`)",
        about: "encode + decode round trip through theta's checked envelope (the snapshot clone, encoding bounded by the limit, compression, CRC-32C, verification, bounded decoding) for each codec + compression, against the bare codec of the same value (bincode `encode_to_vec` + `decode_from_slice`, rmp-serde `to_vec_named` + `from_slice`). Targets: compression of a 64-byte snapshot costs at most 1.1× the uncompressed round trip (the 64-byte table below, best of alternating batches; the `…/64B` rows against `…+none` are criterion means, which a loaded machine disturbs); a 64 KiB text-heavy snapshot is stored at least 3× smaller (sizes table below).",
        rows: envelope_rows!["64B", "4KiB", "64KiB_text", "64KiB_words", "1MiB"],
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
        about: "saves of 256-byte snapshots by N concurrent actors; durable = acknowledged after a flush + fsync (group commit); owned = each actor claimed once, saves stamped with its epoch. Reads: try_read + envelope::open of 10k stored snapshots against raw sled get and raw std::fs::read of the same snapshots (same envelope::open). Open: the census that checks a store of 100k against ACKED, against a raw scan of the tree.",
        rows: &[
            vs("sled/saves/durable/1 actors", SLED_SERIAL),
            vs("sled/saves/durable/8 actors", SLED_SERIAL),
            vs("sled/saves/durable/64 actors", SLED_SERIAL),
            vs(
                "sled/saves/durable-owned/1 actors",
                "sled/saves/durable/1 actors",
            ),
            vs(
                "sled/saves/durable-owned/64 actors",
                "sled/saves/durable/64 actors",
            ),
            vs("sled/saves/volatile/64 actors", SLED_SERIAL),
            vs(
                "sled/saves/volatile-owned/64 actors",
                "sled/saves/volatile/64 actors",
            ),
            vs(
                "sled/reads/try_read 10k, sequential",
                "sled/reads/raw sled get 10k, sequential",
            ),
            vs(
                "sled/reads/try_read 10k, 64 tasks",
                "sled/reads/raw sled get 10k, sequential",
            ),
            vs(
                "sled/reads/try_read 10k, sequential",
                "sled/reads/raw std::fs::read 10k, sequential",
            ),
            vs(
                "sled/reads/try_read 10k, 64 tasks",
                "sled/reads/raw std::fs::read 10k, sequential",
            ),
            alone("sled/recovery/list + read + envelope::open of 100k"),
            vs(
                "sled/open/from_db check of 100k",
                "sled/open/raw scan of 100k",
            ),
        ],
    },
    Suite {
        name: "postgres",
        package: "theta-persistence-postgres",
        bench: "postgres",
        title: "PostgreSQL backend (`theta-persistence-postgres/benches/postgres.rs`)",
        about: "on the server of THETA_POSTGRES_URL, synchronous_commit = on: saves of 256-byte snapshots by N concurrent actors (group commit: one statement per round trip), unowned and owned (claimed first; the owned rows are compared with the unowned ones), against a serial loop of raw single-row upserts; recovery of 100k snapshots (64 tasks, reads and claims batched into `= ANY` statements) against a serial raw SELECT loop of the same rows. Target: recovery ≥ 1×. The save rows are criterion means of separate runs, which the disk's drift moves by tens of percent; the save targets are checked by the interleaved table above (`postgres-latency`).",
        rows: &[
            vs("postgres/saves/theta/1", PG_UPSERT),
            vs("postgres/saves/theta-owned/1", "postgres/saves/theta/1"),
            vs("postgres/saves/theta/64", PG_UPSERT),
            vs("postgres/saves/theta-owned/64", "postgres/saves/theta/64"),
            vs("postgres/recovery/theta read/100k", PG_SELECT),
            vs("postgres/recovery/theta claim/100k", PG_SELECT),
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
    let mut tables: Vec<&TableSuite> = Vec::new();
    let mut args = ours.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--report-only" => report_only = true,
            "--suite" => {
                let name = args.next().context("--suite needs a name")?;
                if let Some(table) = TABLE_SUITES.iter().find(|t| t.name == name.as_str()) {
                    tables.push(table);
                    continue;
                }
                let suite = SUITES
                    .iter()
                    .find(|s| s.name == name.as_str())
                    .with_context(|| {
                        let known: Vec<&str> = TABLE_SUITES
                            .iter()
                            .map(|t| t.name)
                            .chain(SUITES.iter().map(|s| s.name))
                            .collect();
                        format!("unknown suite {name:?} (known: {})", known.join(", "))
                    })?;
                selected.push(suite);
            }
            other => bail!("bench: unknown argument {other:?}\n{USAGE}"),
        }
    }
    if selected.is_empty() && tables.is_empty() {
        selected = SUITES.iter().collect();
        tables = TABLE_SUITES.iter().collect();
    }

    if !report_only {
        for table in &tables {
            if table.package == "theta-persistence-postgres" && !crate::postgres_available()? {
                continue;
            }
            cargo(&["bench", "-p", table.package, "--bench", table.bench], &[])?;
        }
        for suite in &selected {
            if suite.name == "postgres" && !crate::postgres_available()? {
                continue;
            }
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
    if results.is_empty() && !target.join("theta-bench").is_dir() {
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
    for table in TABLE_SUITES {
        let _ = writeln!(out, "## {}\n", table.title);
        let _ = writeln!(out, "{}\n", table.about);
        let path = target_dir()
            .join("theta-bench")
            .join(format!("{}.md", table.name));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let _ = writeln!(out, "{text}");
            }
            Err(_) => {
                let _ = writeln!(
                    out,
                    "_No results: run `cargo xtask bench --suite {}`._\n",
                    table.name
                );
            }
        }
    }
    for suite in SUITES {
        render_suite(&mut out, suite, results);
        if suite.name == "envelope" {
            render_envelope_sizes(&mut out, criterion);
        }
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

/// Stored and encoded payload bytes by compression name.
type ByCompression = BTreeMap<String, (u64, u64)>;

/// The envelope bench's own figures (`<criterion>/envelope-sizes.json`, written by
/// `theta/benches/envelope.rs`): the 64-byte compression overhead against none,
/// and per value and codec the bytes stored with each compression and how many
/// times smaller than uncompressed.
fn render_envelope_sizes(out: &mut String, criterion: &Path) {
    let path = criterion.join("envelope-sizes.json");
    let Ok(report) = read_json(&path) else {
        let _ = writeln!(
            out,
            "_No payload sizes: `{}` is missing._\n",
            path.display()
        );
        return;
    };
    if let Some(tiny) = report["tiny"].as_array() {
        let _ = writeln!(
            out,
            "64-byte snapshot, each compression setting against none, best of 200 \
             alternating batches (target: time ratio at most 1.10):\n"
        );
        let _ = writeln!(
            out,
            "| benchmark | time | baseline | baseline time | time ratio |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|---:|");
        for t in tiny {
            let ns = t["ns"].as_f64().unwrap_or(0.0);
            let base = t["baseline_ns"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | {} | {} |",
                t["variant"].as_str().unwrap_or("?"),
                duration(ns),
                t["baseline"].as_str().unwrap_or("?"),
                duration(base),
                if base > 0.0 {
                    format!("{:.2}", ns / base)
                } else {
                    "—".to_string()
                }
            );
        }
        let _ = writeln!(out);
    }
    let sizes = &report["sizes"];
    let _ = writeln!(
        out,
        "Payload sizes (bytes stored; × = times smaller than uncompressed):\n"
    );
    let _ = writeln!(out, "| value | codec | none | lz4 | zstd |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    // (value, codec) -> compression -> (stored, encoded), in the bench's order.
    let mut rows: Vec<((String, String), ByCompression)> = Vec::new();
    for size in sizes.as_array().into_iter().flatten() {
        let field = |name: &str| size[name].as_str().unwrap_or("?").to_string();
        let key = (field("value"), field("codec"));
        let entry = (
            size["stored"].as_u64().unwrap_or(0),
            size["encoded"].as_u64().unwrap_or(0),
        );
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, by)) => {
                by.insert(field("compression"), entry);
            }
            None => rows.push((key, BTreeMap::from([(field("compression"), entry)]))),
        }
    }
    for ((value, codec), by) in &rows {
        let cell = |compression: &str| match by.get(compression) {
            Some(&(stored, encoded)) if stored > 0 => {
                format!("{stored} ({:.2}×)", encoded as f64 / stored as f64)
            }
            _ => "—".to_string(),
        };
        let _ = writeln!(
            out,
            "| {value} | {codec} | {} | {} | {} |",
            cell("none"),
            cell("lz4"),
            cell("zstd")
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
