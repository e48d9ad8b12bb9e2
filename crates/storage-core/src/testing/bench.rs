//! The workloads every driver is measured with, beside raw baselines in
//! the same run (the benches of `storage-mmap` and `storage-mem` use them),
//! and the table they report: medians, as ratios to the baseline. Feature
//! `testing`; not a stable API.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    reason = "bench support: timings shown as floating-point ratios, failures panic, results always used"
)]

use std::{sync::Arc, thread, time::Instant};

use crate::{ResourceExt, WaitOutcome};

pub const MIB: usize = 1 << 20;
pub const CHUNK: usize = 64 * 1024;

pub struct Config {
    pub rounds: usize,
    pub file_len: usize,
    pub random_ops: usize,
    pub pings: usize,
}

impl Config {
    /// The full run, or with `--quick` among the arguments a smoke run.
    pub fn from_args() -> Self {
        if std::env::args().any(|a| a == "--quick") {
            Self {
                rounds: 3,
                file_len: 64 * MIB,
                random_ops: 200_000,
                pings: 500,
            }
        } else {
            Self {
                rounds: 7,
                file_len: 256 * MIB,
                random_ops: 1_000_000,
                pings: 2000,
            }
        }
    }
}

pub fn write_sequential(resource: &impl ResourceExt, data: &[u8]) {
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        resource.write_at((i * CHUNK) as u64, chunk).expect("write");
    }
    resource.commit(Some(data.len() as u64)).expect("commit");
}

/// Seconds per round of reading `resource` and `raw` (the same bytes) in
/// 64 KiB chunks, alternately.
pub fn sequential_reads(
    rounds: usize,
    resource: &impl ResourceExt,
    raw: &[u8],
) -> (Vec<f64>, Vec<f64>) {
    let mut buf = vec![0u8; CHUNK];
    let (mut ours, mut raw_times) = (vec![], vec![]);
    for _ in 0..rounds {
        let started = Instant::now();
        std::hint::black_box(read_sequential(resource, raw.len(), &mut buf));
        ours.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        std::hint::black_box(raw_read_sequential(raw, CHUNK, &mut buf));
        raw_times.push(started.elapsed().as_secs_f64());
    }
    (ours, raw_times)
}

pub fn read_sequential(resource: &impl ResourceExt, len: usize, buf: &mut [u8]) -> u64 {
    let mut sum = 0u64;
    for offset in (0..len).step_by(CHUNK) {
        let n = resource.read_at(offset as u64, buf).expect("read");
        sum = sum.wrapping_add(u64::from(buf[n / 2]));
    }
    sum
}

/// A 4 KiB read at an offset, shared by reader threads.
pub type Reader = Arc<dyn Fn(u64, &mut [u8]) + Send + Sync>;

/// Ops per second of `threads` threads doing `ops` random 4 KiB reads each.
pub fn random_reads(threads: usize, ops: usize, len: usize, read: &Reader) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let read = Arc::clone(read);
            thread::spawn(move || {
                let mut next = xorshift(t as u64 * 7919 + 1);
                let mut buf = vec![0u8; 4096];
                let mut sum = 0u64;
                for _ in 0..ops {
                    let offset = (next() % (len - 4096) as u64) & !4095;
                    read(offset, &mut buf);
                    sum = sum.wrapping_add(u64::from(buf[7]));
                }
                sum
            })
        })
        .collect();
    for handle in handles {
        std::hint::black_box(handle.join().expect("reader"));
    }
    (threads * ops) as f64 / started.elapsed().as_secs_f64()
}

/// Writer thread → reader thread through `resource`: seconds until the
/// reader has read and checked every chunk.
pub fn pipe<R: ResourceExt + Clone>(resource: &R, data: &Arc<Vec<u8>>) -> f64 {
    let started = Instant::now();
    let writer = {
        let (resource, data) = (resource.clone(), Arc::clone(data));
        thread::spawn(move || write_sequential(&resource, &data))
    };
    let mut buf = vec![0u8; CHUNK];
    for offset in (0..data.len()).step_by(CHUNK) {
        let end = (offset + CHUNK).min(data.len());
        let outcome = resource
            .wait_range(offset as u64..end as u64)
            .expect("wait");
        assert_eq!(outcome, WaitOutcome::Ready);
        let n = resource
            .read_at(offset as u64, &mut buf[..end - offset])
            .expect("read");
        assert_eq!(buf[n - 1], data[end - 1]);
    }
    writer.join().expect("writer");
    started.elapsed().as_secs_f64()
}

/// Out-of-order 1 KiB writes: (ns per `write_at`, ns per `wait_range` hit).
pub fn out_of_order<R: ResourceExt>(resource: &R, writes: usize) -> (f64, f64) {
    let block = [7u8; 1024];
    let order = shuffled(writes, 99);
    let started = Instant::now();
    for &i in &order {
        resource.write_at((i * 1024) as u64, &block).expect("write");
    }
    let write_ns = started.elapsed().as_nanos() as f64 / writes as f64;
    let mut next = xorshift(5);
    let started = Instant::now();
    for _ in 0..writes {
        let at = next() % (writes as u64 * 1024 - 1024);
        let outcome = resource.wait_range(at..at + 1024).expect("wait");
        std::hint::black_box(outcome);
    }
    (
        write_ns,
        started.elapsed().as_nanos() as f64 / writes as f64,
    )
}

/// Copies `bytes` out chunk by chunk; returns a checksum.
pub fn raw_read_sequential(bytes: &[u8], chunk: usize, buf: &mut [u8]) -> u64 {
    let mut sum = 0u64;
    for piece in bytes.chunks(chunk) {
        buf[..piece.len()].copy_from_slice(piece);
        sum = sum.wrapping_add(u64::from(buf[piece.len() / 2]));
    }
    sum
}

/// A `Vec` grown chunk by chunk: seconds.
pub fn vec_write(data: &[u8], chunk: usize) -> f64 {
    let started = Instant::now();
    let mut bytes = Vec::new();
    for piece in data.chunks(chunk) {
        bytes.extend_from_slice(piece);
    }
    std::hint::black_box(&bytes);
    drop(bytes);
    started.elapsed().as_secs_f64()
}

/// 1 KiB copies in `order` into a zeroed `Vec`: ns per write.
pub fn vec_scattered(order: &[usize]) -> f64 {
    let mut bytes = vec![0u8; order.len() * 1024];
    let block = [7u8; 1024];
    let started = Instant::now();
    for &i in order {
        bytes[i * 1024..(i + 1) * 1024].copy_from_slice(&block);
    }
    std::hint::black_box(&bytes);
    started.elapsed().as_nanos() as f64 / order.len() as f64
}

/// The median of `values` (sorts them).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `p`-th percentile (0..=100) of `values` (sorts them).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * p / 100.0).round() as usize;
    values[index]
}

/// A xorshift generator: deterministic, so runs compare.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// The suite's deterministic shuffle, for the benches too (one of it).
pub use super::shuffled;

/// `len` bytes of pseudo-random data.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&next().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// The summary: one markdown row per workload.
pub struct Table {
    file_len: usize,
    rows: Vec<String>,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

impl Table {
    pub fn new(file_len: usize) -> Self {
        Self {
            file_len,
            rows: Vec::new(),
        }
    }

    /// A throughput workload measured in seconds (lower is better).
    pub fn throughput(&mut self, name: &str, baseline: &str, ours: f64, raw: f64, target: f64) {
        let gb = |seconds: f64| self.file_len as f64 / seconds / 1e9;
        let ratio = raw / ours;
        let (goal, met) = if target > 0.0 {
            (format!("≥ {target}"), verdict(ratio >= target))
        } else {
            ("—".into(), "")
        };
        self.rows.push(format!(
            "| {name} | {:.2} GB/s | {baseline}: {:.2} GB/s | {ratio:.2} | {goal} | {met} |",
            gb(ours),
            gb(raw),
        ));
    }

    /// A count (of syncs, threads, ...) that must stay at most `at_most`.
    pub fn count(&mut self, name: &str, what: &str, count: f64, at_most: f64) {
        self.rows.push(format!(
            "| {name} | {count:.1} {what} | — | — | ≤ {at_most} | {} |",
            verdict(count <= at_most)
        ));
    }

    /// A rate workload in operations per second (higher is better).
    pub fn rate(&mut self, name: &str, baseline: &str, ours: f64, raw: f64, target: f64) {
        let ratio = ours / raw;
        let goal = if target > 0.0 {
            format!("≥ {target}")
        } else {
            "—".into()
        };
        let met = if target > 0.0 {
            verdict(ratio >= target)
        } else {
            ""
        };
        self.rows.push(format!(
            "| {name} | {:.2} Mops/s ({:.0} ns/op) | {baseline}: {:.2} Mops/s ({:.0} ns/op) | {ratio:.2} | {goal} | {met} |",
            ours / 1e6,
            1e9 / ours,
            raw / 1e6,
            1e9 / raw,
        ));
    }

    /// Latencies in µs: p50/p99, against a raw baseline's p99 when given
    /// (target: ratio of p99s at most `target`), else an absolute p99 bound
    /// of `target` µs.
    pub fn latency(&mut self, name: &str, ours: &mut [f64], raw: Option<Vec<f64>>, target: f64) {
        let (p50, p99) = (percentile(ours, 50.0), percentile(ours, 99.0));
        if let Some(mut raw) = raw {
            let (r50, r99) = (percentile(&mut raw, 50.0), percentile(&mut raw, 99.0));
            let ratio = p99 / r99;
            self.rows.push(format!(
                "| {name} | p50 {p50:.1} µs, p99 {p99:.1} µs | parking_lot condvar ping: p50 {r50:.1} µs, p99 {r99:.1} µs | p99 {ratio:.2}× | p99 ≤ {target}× | {} |",
                verdict(ratio <= target)
            ));
        } else {
            self.rows.push(format!(
                "| {name} | p50 {p50:.1} µs, p99 {p99:.1} µs | — | — | p99 ≤ {target} µs | {} |",
                verdict(p99 <= target)
            ));
        }
    }

    /// Per-call costs in ns: writes against a raw baseline's writes (target:
    /// `raw / ours` at least `target`), and `wait_range` hits.
    pub fn cost(
        &mut self,
        name: &str,
        write_ns: f64,
        hit_ns: f64,
        baseline: &str,
        raw_ns: f64,
        target: f64,
    ) {
        let ratio = raw_ns / write_ns;
        let (goal, met) = if target > 0.0 {
            (format!("≥ {target}"), verdict(ratio >= target))
        } else {
            ("—".into(), "")
        };
        self.rows.push(format!(
            "| {name} | {write_ns:.0} ns per write_at, {hit_ns:.0} ns per wait_range hit | {baseline}: {raw_ns:.0} ns per write | {ratio:.2} | {goal} | {met} |"
        ));
    }

    pub fn print(&self) {
        println!("| workload | ours (median) | baseline in the same run | ratio | target | |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for row in &self.rows {
            println!("{row}");
        }
    }
}
