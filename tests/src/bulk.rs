//! Long runs over many actors: one ask to each of many ids through a
//! [`VirtualActors`] handle with bounded parallelism (a census), a progress bar
//! for such a phase, and what the process cost (peak resident set).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use theta::persistence::{PersistentActor, VirtualActors};
use theta::{ActorId, Message};

/// Asks each of `ids` the message `msg(id)` through `handle` (activating those
/// that are not live), `parallelism` asks at a time, each within `timeout`;
/// returns the answers in the order of `ids`, or the first failure, naming
/// the id. Each answer moves `bar` on by one; it is cleared at the end.
pub async fn ask_all<A, M>(
    handle: &VirtualActors<A>,
    ids: Vec<ActorId>,
    parallelism: usize,
    timeout: Duration,
    msg: fn(ActorId) -> M,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<M::Return>>
where
    A: PersistentActor,
    M: Message<A>,
{
    let ids: Arc<[ActorId]> = ids.into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallelism.max(1) {
        let (handle, ids, next, bar) = (handle.clone(), ids.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&id) = ids.get(i) else {
                    return anyhow::Ok(answers);
                };
                let answer = tokio::time::timeout(timeout, handle.ask(id, msg(id)))
                    .await
                    .with_context(|| format!("actor {id} did not answer within {timeout:?}"))?
                    .with_context(|| format!("asking actor {id}"))?;
                answers.push((i, answer));
                bar.inc(1);
            }
        });
    }
    let mut answers = Vec::with_capacity(ids.len());
    while let Some(joined) = tasks.join_next().await {
        answers.extend(joined.context("a census task panicked")??);
    }
    bar.finish_and_clear();
    answers.sort_unstable_by_key(|(i, _)| *i);
    Ok(answers.into_iter().map(|(_, answer)| answer).collect())
}

/// A progress bar of `len` steps on stderr with `message`, or a hidden one
/// when `visible` is false (indicatif also hides it when stderr is no
/// terminal).
pub fn progress(len: u64, message: &'static str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message);
    match ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
    {
        Ok(style) => bar.with_style(style),
        Err(_) => bar,
    }
}

/// Shows a bar of `length` (in whole seconds) filling up, its message
/// refreshed from `message` every 100 ms, and returns when `length` is over.
pub async fn show_for(length: Duration, visible: bool, message: impl Fn() -> String) {
    let bar = progress(length.as_secs(), "s", visible);
    let started = Instant::now();
    while let Some(left) = length.checked_sub(started.elapsed()) {
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(message());
        if left.is_zero() {
            break;
        }
    }
    bar.finish_and_clear();
}

/// This process's peak resident set (`VmHWM` of `/proc/self/status`) in MiB;
/// NaN where the kernel does not say.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    let kib = line.and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.map_or(f64::NAN, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_resident_set_is_read_on_linux() {
        let mib = peak_rss_mib();
        assert!(mib > 0.1 && mib < 1e6, "{mib}");
    }
}
