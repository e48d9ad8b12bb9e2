//! The library's job end to end: an async downloader writes a file into an
//! mmap resource out of order while a reader thread streams through it.
//!
//! ```sh
//! cargo run --release --example stream              # a generated 256 MiB file
//! cargo run --release --example stream -- FILE      # your file
//! cargo run --release --example stream -- --rate 200  # download at 200 MB/s
//! ```
//!
//! A tokio task plays the downloader: it writes 64 KiB chunks in order from
//! where the reader last seeked, jumps when the reader seeks, and fills the
//! gaps it left once it reaches the end. A reader thread reads the file with
//! `wait_range` + `read_at`, seeking twice (forward, then back), and checks
//! every byte against the source. The summary gives bytes, throughput, the
//! number and longest of the waits, and checksums; any mismatch exits 1.

#![allow(
    clippy::cast_precision_loss,
    reason = "byte counts shown as MiB and percentages need no 53-bit precision"
)]

use std::{
    ops::Range,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use storage::{
    AvailabilityObserver, CancellationToken, MmapOptions, MmapResource, OpenMode, ResourceExt,
    WaitOutcome,
};
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;
const GENERATED_LEN: usize = 256 << 20;

/// Counts the bytes the downloader has written (the observer hook in use).
#[derive(Default)]
struct Progress {
    written: AtomicU64,
}

impl AvailabilityObserver for Progress {
    fn on_commit(&self, _final_len: u64) {}
    fn on_write(&self, range: Range<u64>) {
        self.written
            .fetch_add(range.end - range.start, Ordering::Relaxed);
    }
}

/// What the reader saw.
struct ReadReport {
    bytes: u64,
    waits: u64,
    longest_wait: Duration,
    mismatches: u64,
    elapsed: Duration,
}

fn generate(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// The downloader: writes chunks from `cursor`, jumping on seek requests,
/// then fills the gaps, then commits. Returns (chunks written, jumps).
async fn download(
    resource: MmapResource,
    source: Arc<Vec<u8>>,
    mut seeks: mpsc::UnboundedReceiver<u64>,
    bytes_per_second: f64,
) -> storage::StorageResult<(u64, u64)> {
    let total = source.len() as u64;
    let started = Instant::now();
    let (mut cursor, mut sent, mut chunks, mut jumps) = (0u64, 0u64, 0u64, 0u64);
    loop {
        while let Ok(target) = seeks.try_recv() {
            cursor = target / CHUNK as u64 * CHUNK as u64;
            jumps += 1;
        }
        if cursor >= total {
            match resource.next_gap(0, total) {
                Some(gap) => cursor = gap.start / CHUNK as u64 * CHUNK as u64,
                None => break,
            }
        }
        let end = (cursor + CHUNK as u64).min(total);
        if !resource.contains_range(cursor..end) {
            let range = usize::try_from(cursor).unwrap()..usize::try_from(end).unwrap();
            resource.write_at(cursor, &source[range])?;
            chunks += 1;
            sent += end - cursor;
            // Simulated network: stay at the configured rate.
            if sent % (1 << 20) < CHUNK as u64 {
                let due = Duration::from_secs_f64(sent as f64 / bytes_per_second);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
        }
        cursor = end;
    }
    resource.commit(Some(total))?;
    Ok((chunks, jumps))
}

/// The reader: [0, 20%), seek to 60% → [60%, 100%), seek back to 20% → [20%, 60%).
fn read_through(
    resource: &MmapResource,
    source: &[u8],
    seeks: &mpsc::UnboundedSender<u64>,
    read_bytes: &AtomicU64,
) -> storage::StorageResult<ReadReport> {
    let total = source.len() as u64;
    let at = |percent: u64| total * percent / 100;
    let legs = [at(0)..at(20), at(60)..total, at(20)..at(60)];
    let started = Instant::now();
    let mut report = ReadReport {
        bytes: 0,
        waits: 0,
        longest_wait: Duration::ZERO,
        mismatches: 0,
        elapsed: Duration::ZERO,
    };
    let mut buf = vec![0; CHUNK];
    for (leg, range) in legs.into_iter().enumerate() {
        if leg > 0 {
            let _ = seeks.send(range.start);
        }
        let mut pos = range.start;
        while pos < range.end {
            let want = (pos + CHUNK as u64).min(range.end);
            if !resource.contains_range(pos..want) {
                let waited = Instant::now();
                let outcome = resource.wait_range(pos..want)?;
                assert_eq!(outcome, WaitOutcome::Ready, "wait for {pos}..{want}");
                report.waits += 1;
                report.longest_wait = report.longest_wait.max(waited.elapsed());
            }
            let len = usize::try_from(want - pos).unwrap();
            let n = resource.read_at(pos, &mut buf[..len])?;
            let from = usize::try_from(pos).unwrap();
            if n != len || buf[..n] != source[from..from + len] {
                report.mismatches += 1;
            }
            pos = want;
            report.bytes += n as u64;
            read_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn crc_of_resource(resource: &MmapResource) -> storage::StorageResult<(u32, u64)> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    let mut pos = 0;
    loop {
        let n = resource.read_at(pos, &mut buf)?;
        if n == 0 {
            return Ok((hasher.finalize(), pos));
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
}

fn print_summary(
    report: &ReadReport,
    total: u64,
    disk_len: u64,
    (chunks, jumps): (u64, u64),
    (source_crc, resource_crc): (u32, u32),
    ok: bool,
) {
    let seconds = report.elapsed.as_secs_f64();
    println!("summary:");
    println!(
        "  bytes        {total} ({:.1} MiB), file on disk {disk_len} bytes",
        mib(total)
    );
    println!("  downloader   {chunks} chunks of 64 KiB, {jumps} jumps for seeks, then gaps filled");
    println!(
        "  reader       {:.1} MiB in {seconds:.3} s = {:.1} MiB/s, 2 seeks",
        mib(report.bytes),
        mib(report.bytes) / seconds
    );
    println!(
        "  waits        {} blocked, longest {:.3} ms",
        report.waits,
        report.longest_wait.as_secs_f64() * 1e3
    );
    println!(
        "  checksum     source crc32 {source_crc:08x}, resource crc32 {resource_crc:08x}, chunks differing {}",
        report.mismatches
    );
    println!("  result       {}", if ok { "OK" } else { "MISMATCH" });
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("stream: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut rate_mb) = (None, 500.0);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => rate_mb = args.next().ok_or("--rate needs MB/s")?.parse()?,
            "-h" | "--help" => {
                println!("usage: stream [FILE] [--rate MB_PER_S]");
                return Ok(true);
            }
            _ => file = Some(arg),
        }
    }
    let source = Arc::new(match &file {
        Some(path) => std::fs::read(path)?,
        None => generate(GENERATED_LEN),
    });
    let total = source.len() as u64;
    let source_crc = crc32fast::hash(&source);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stream.bin");
    println!(
        "stream: {:.1} MiB from {} into {}, downloader at {rate_mb} MB/s",
        mib(total),
        file.as_deref().unwrap_or("a generated source"),
        path.display()
    );

    let progress = Arc::new(Progress::default());
    let resource = MmapResource::open_with_observer(
        CancellationToken::new(),
        MmapOptions {
            path: path.clone(),
            initial_len: None,
            mode: OpenMode::Auto,
        },
        Some(Arc::clone(&progress) as Arc<dyn AvailabilityObserver>),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let (seek_tx, seek_rx) = mpsc::unbounded_channel();
    let downloader = runtime.spawn(download(
        resource.clone(),
        Arc::clone(&source),
        seek_rx,
        rate_mb * 1e6,
    ));

    let read_bytes = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (progress, read_bytes, done) = (
            Arc::clone(&progress),
            Arc::clone(&read_bytes),
            Arc::clone(&done),
        );
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                let percent = |n: u64| n as f64 * 100.0 / total.max(1) as f64;
                println!(
                    "  downloaded {:5.1}%   read {:5.1}%",
                    percent(progress.written.load(Ordering::Relaxed)),
                    percent(read_bytes.load(Ordering::Relaxed)),
                );
            }
        })
    };

    let reader = {
        let (resource, source) = (resource.clone(), Arc::clone(&source));
        thread::spawn(move || read_through(&resource, &source, &seek_tx, &read_bytes))
    };
    let report = reader.join().map_err(|_| "the reader panicked")??;
    let (chunks, jumps) = runtime.block_on(downloader)??;
    done.store(true, Ordering::Relaxed);
    ticker.join().map_err(|_| "the progress thread panicked")?;

    let (resource_crc, resource_len) = crc_of_resource(&resource)?;
    let disk_len = std::fs::metadata(&path)?.len();
    let ok = report.mismatches == 0
        && report.bytes == total
        && resource_crc == source_crc
        && resource_len == total
        && disk_len == total;

    print_summary(
        &report,
        total,
        disk_len,
        (chunks, jumps),
        (source_crc, resource_crc),
        ok,
    );
    Ok(ok)
}
