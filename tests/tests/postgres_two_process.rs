//! Two OS processes claim and write the same 100 ids through `PostgresStorage`.
//!
//! Process A claims every id and saves as fast as it can; the test SIGSTOPs it.
//! Process B's exclusive claims are refused while A's lease lives, then granted
//! once it has run out (the TTL is 1 s here); B saves a few snapshots of each
//! id and exits. A is continued: every one of its writes is refused with
//! `Fenced`. At the end each id holds exactly B's last acknowledged snapshot.
//!
//! `harness = false`: `main` runs the test, or one child when
//! `THETA_PG_TWO_CHILD` says which (the children are this same binary).

mod postgres_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use theta::ActorId;
use theta::persistence::envelope::{self, Stamp};
use theta::persistence::{ClaimMode, Fenced, OwnedElsewhere, OwnerId, PersistentStorage};
use theta_persistence_postgres::PostgresStorage;

const IDS: u128 = 100;
const TYPE: uuid::Uuid = uuid::uuid!("2b0c0000-0000-4000-8000-000000002b0c");
const TTL: Duration = Duration::from_secs(1);
/// Saves per id of process B.
const B_WRITES: u64 = 5;

fn ids() -> Vec<ActorId> {
    (1..=IDS)
        .map(|i| ActorId::from_u128(0x2b0c << 64 | i))
        .collect()
}

fn snapshot(role: &str, id: ActorId, stamp: Stamp) -> Vec<u8> {
    envelope::Seal::new(TYPE)
        .actor_id(id)
        .stamp(stamp)
        .seal(format!("{role} {} {}", stamp.epoch, stamp.sequence).as_bytes())
}

fn main() -> ExitCode {
    if let Ok(role) = std::env::var("THETA_PG_TWO_CHILD") {
        return match child(&role) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("ERROR {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(url) = postgres_support::server() else {
        println!("test two_processes_one_paused_past_its_lease ... skipped (no server)");
        return ExitCode::SUCCESS;
    };
    let schema = postgres_support::fresh_schema("theta_two");
    let result = std::panic::catch_unwind(|| parent(&url, &schema));
    postgres_support::drop_schemas(&url, vec![schema]);
    match result {
        Ok(()) => {
            println!("test two_processes_one_paused_past_its_lease ... ok");
            println!(
                "\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
            );
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("test two_processes_one_paused_past_its_lease ... FAILED");
            println!(
                "\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
            );
            ExitCode::FAILURE
        }
    }
}

/// One process: claim every id (retrying while another live owner holds it),
/// then save each until fenced (A) or `B_WRITES` times (B).
fn child(role: &str) -> anyhow::Result<()> {
    let url = std::env::var("THETA_POSTGRES_URL")?;
    let schema = std::env::var("THETA_PG_TWO_SCHEMA")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let storage = PostgresStorage::builder(&url)
            .schema(&schema)
            .lease_ttl(TTL)
            .connect()
            .await?;
        let owner = OwnerId::new();
        let mut tasks = Vec::new();
        for id in ids() {
            let (storage, role) = (storage.clone(), role.to_owned());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut refusals = 0u64;
                let epoch = loop {
                    match storage.try_claim(id, owner, ClaimMode::Exclusive).await {
                        Ok(claim) => break claim.epoch,
                        Err(e) if e.is::<OwnedElsewhere>() && Instant::now() < deadline => {
                            refusals += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(e.context(format!("claiming {id}"))),
                    }
                };
                println!("CLAIMED {id} {epoch} {refusals}");
                let mut sequence = 0;
                loop {
                    sequence += 1;
                    if role == "b" && sequence > B_WRITES {
                        return Ok(());
                    }
                    let stamp = Stamp::new(epoch, sequence);
                    match storage.try_write(id, snapshot(&role, id, stamp)).await {
                        Ok(()) => println!("ACK {id} {epoch} {sequence}"),
                        Err(e) if e.is::<Fenced>() => {
                            println!("FENCED {id}");
                            return Ok(());
                        }
                        Err(e) => return Err(e.context(format!("saving {id} at {stamp:?}"))),
                    }
                    if Instant::now() > deadline + Duration::from_secs(30) {
                        anyhow::bail!("{id} was never fenced");
                    }
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })
}

/// A running child and the lines it printed.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    /// A failed test leaves no child behind (a stopped one included).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(role: &str, url: &str, schema: &str) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("THETA_PG_TWO_CHILD", role)
        .env("THETA_POSTGRES_URL", url)
        .env("THETA_PG_TWO_SCHEMA", schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a child");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// What one child said, by id.
#[derive(Default, Debug)]
struct Said {
    claimed: HashMap<ActorId, (u64, u64)>,
    acked: HashMap<ActorId, u64>,
    fenced: HashSet<ActorId>,
    acks: usize,
}

impl Said {
    fn take(&mut self, role: &str, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["CLAIMED", id, epoch, refusals] => {
                self.claimed.insert(
                    id.parse().unwrap(),
                    (epoch.parse().unwrap(), refusals.parse().unwrap()),
                );
            }
            ["ACK", id, _epoch, sequence] => {
                let id = id.parse().unwrap();
                assert!(
                    !self.fenced.contains(&id),
                    "{role} acknowledged a write of {id} after it was fenced"
                );
                self.acked.insert(id, sequence.parse().unwrap());
                self.acks += 1;
            }
            ["FENCED", id] => {
                self.fenced.insert(id.parse().unwrap());
            }
            _ => panic!("{role}: {line}"),
        }
    }

    /// Reads lines until `done` holds, within `limit`.
    fn until(
        &mut self,
        role: &str,
        running: &Running,
        limit: Duration,
        done: impl Fn(&Said) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.lines.recv_timeout(left) {
                Ok(line) => self.take(role, &line),
                Err(e) => panic!("{role}: waiting: {e} ({self:?})"),
            }
        }
    }
}

fn parent(url: &str, schema: &str) {
    let started = Instant::now();
    let all = IDS as usize;
    let mut a = spawn("a", url, schema);
    let mut said_a = Said::default();
    said_a.until("a", &a, Duration::from_secs(30), |s| {
        s.claimed.len() == all && s.acks >= 3 * all
    });
    signal(&a.child, "-STOP");

    let mut b = spawn("b", url, schema);
    let mut said_b = Said::default();
    said_b.until("b", &b, Duration::from_secs(30), |s| {
        s.claimed.len() == all && s.acked.values().filter(|&&n| n == B_WRITES).count() == all
    });
    let status = b.child.wait().unwrap();
    assert!(status.success(), "b: {status}");
    for line in b.lines.try_iter() {
        said_b.take("b", &line);
    }
    let refused: u64 = said_b.claimed.values().map(|(_, r)| r).sum();
    assert!(
        refused > 0,
        "b's claims were never refused while a's lease lived"
    );
    for id in ids() {
        assert!(
            said_b.claimed[&id].0 > said_a.claimed[&id].0,
            "{id}: b's epoch is not above a's"
        );
    }

    signal(&a.child, "-CONT");
    said_a.until("a", &a, Duration::from_secs(30), |s| s.fenced.len() == all);
    let status = a.child.wait().unwrap();
    assert!(status.success(), "a: {status}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = PostgresStorage::builder(url)
            .schema(schema)
            .connect()
            .await
            .unwrap();
        for id in ids() {
            let want = snapshot("b", id, Stamp::new(said_b.claimed[&id].0, B_WRITES));
            assert_eq!(storage.try_read(id).await.unwrap(), want, "{id}");
        }
        storage.try_close().await.unwrap();
    });
    eprintln!(
        "two processes: a acked {} saves before its pause and was fenced on all {all} ids; \
         b's claims were refused {refused} times until a's lease ran out ({:.1} s)",
        said_a.acks,
        started.elapsed().as_secs_f64()
    );
}
