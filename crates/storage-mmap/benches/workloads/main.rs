//! The benchmark suite: every workload of the contract's performance table
//! next to its raw baseline, measured in the same run, reported as ratios.
//!
//! `cargo bench -p storage-mmap --bench workloads` (or `cargo xtask bench`,
//! which also runs the memory driver's) prints a markdown table of medians;
//! `-- --quick` runs fewer rounds. The workloads themselves are shared with
//! the memory driver's bench, in `storage_core::testing::bench`.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "timings and counts shown as floating-point ratios"
)]

mod raw;

use std::{path::Path, sync::Arc, thread, time::Instant};

use storage_core::{
    CancellationToken, ResourceExt,
    testing::{
        ReferenceResource,
        bench::{
            CHUNK, Config, Reader, Table, median, out_of_order, pattern, pipe, random_reads,
            sequential_reads, shuffled, write_sequential,
        },
    },
};
use storage_mmap::{MmapOptions, MmapResource, OpenMode};

fn mmap_at(path: &Path, initial_len: Option<u64>) -> MmapResource {
    let _ = std::fs::remove_file(path);
    MmapResource::open(
        CancellationToken::new(),
        MmapOptions {
            path: path.to_path_buf(),
            initial_len,
            mode: OpenMode::Auto,
        },
    )
    .expect("open mmap resource")
}

/// Wake latency: a waiter parked on byte `i`, `write_at` covers it; with
/// `idle` more waiters parked on ranges never written. Returns latencies (µs).
fn wake_latencies<R: ResourceExt + Clone>(
    resource: &R,
    waiters: impl Fn() -> usize,
    pings: usize,
    idle: usize,
) -> Vec<f64> {
    let far = 1u64 << 40;
    let idlers: Vec<_> = (0..idle as u64)
        .map(|i| {
            let resource = resource.clone();
            thread::spawn(move || resource.wait_range(far + i * 10..far + i * 10 + 1))
        })
        .collect();
    while waiters() < idle {
        thread::yield_now();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let resource = resource.clone();
        thread::spawn(move || {
            for i in 0..pings as u64 {
                resource.wait_range(i..i + 1).expect("wait");
                tx.send(Instant::now()).expect("send");
            }
        })
    };
    let mut latencies = Vec::with_capacity(pings);
    for i in 0..pings as u64 {
        while waiters() < idle + 1 {
            thread::yield_now();
        }
        let before = Instant::now();
        resource.write_at(i, &[1]).expect("write");
        let woke = rx.recv().expect("recv");
        latencies.push(woke.duration_since(before).as_secs_f64() * 1e6);
    }
    waiter.join().expect("waiter");
    resource.fail("benchmark done".into());
    for idler in idlers {
        let _ = idler.join();
    }
    latencies
}

/// Cancel latency: a parked waiter, the token is cancelled (a mechanism of
/// `Resource`, the same for every driver: the reference one). Latencies (µs).
fn cancel_latencies(pings: usize) -> Vec<f64> {
    (0..pings)
        .map(|_| {
            let cancel = CancellationToken::new();
            let resource = ReferenceResource::new(cancel.clone());
            let waiter = {
                let resource = resource.clone();
                thread::spawn(move || {
                    let _ = resource.wait_range(0..1);
                    Instant::now()
                })
            };
            while resource.waiter_count() < 1 {
                thread::yield_now();
            }
            let before = Instant::now();
            cancel.cancel();
            let woke = waiter.join().expect("waiter");
            woke.duration_since(before).as_secs_f64() * 1e6
        })
        .collect()
}

fn main() {
    let config = Config::from_args();
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temporary directory");
    let data = Arc::new(pattern(config.file_len));
    let mut table = Table::new(config.file_len);
    run_mmap(&config, dir.path(), &data, &mut table);
    run_latencies(&config, dir.path(), &mut table);
    run_scaling(dir.path(), &mut table);
    run_replacements(&config, dir.path(), &mut table);
    run_trickle(dir.path(), &mut table);
    table.print();
}

fn run_mmap(config: &Config, dir: &Path, data: &Arc<Vec<u8>>, table: &mut Table) {
    let len = data.len();
    let path = dir.join("seq.bin");
    let (mut ours, mut memcpy, mut pwrite, mut pipes) = (vec![], vec![], vec![], vec![]);
    let (mut durable, mut ours_durable) = (vec![], vec![]);
    for _ in 0..config.rounds {
        memcpy.push(raw::mmap_write(&path, data, CHUNK));
        pwrite.push(raw::pwrite(&path, data, CHUNK, false));
        durable.push(raw::pwrite(&path, data, CHUNK, true));
        // Until `commit` returns: its sync is the background's (the drop,
        // outside the timing, waits for it).
        let resource = mmap_at(&path, None);
        let started = Instant::now();
        write_sequential(&resource, data);
        ours.push(started.elapsed().as_secs_f64());
        drop(resource);
        // The same, until `sync()` says the file is durable.
        let resource = mmap_at(&path, None);
        let started = Instant::now();
        write_sequential(&resource, data);
        resource.sync().expect("sync");
        ours_durable.push(started.elapsed().as_secs_f64());
        drop(resource);
        pipes.push(pipe(&mmap_at(&path, None), data));
    }
    let best_raw = median(&mut memcpy).min(median(&mut pwrite));
    table.throughput(
        "1. sequential write 64 KiB, fresh file + commit",
        "best of raw memmap2 memcpy / pwrite",
        median(&mut ours),
        best_raw,
        0.95,
    );
    table.throughput(
        "1b. the same + sync() (durable)",
        "raw pwrite + fdatasync",
        median(&mut ours_durable),
        median(&mut durable),
        1.0,
    );
    table.throughput(
        "5. writer → reader pipe, 64 KiB, incl. commit",
        "raw sequential write (1.)",
        median(&mut pipes),
        best_raw,
        0.9,
    );

    // Reads of the committed file.
    let resource = mmap_at(&path, None);
    write_sequential(&resource, data);
    let raw_map = Arc::new(raw::map_read(&path));
    let (mut ours, mut raw_times) = sequential_reads(config.rounds, &resource, &raw_map);
    table.throughput(
        "2. sequential read 64 KiB, committed",
        "raw memmap2 memcpy",
        median(&mut ours),
        median(&mut raw_times),
        0.95,
    );

    for threads in [1, 2, 4] {
        let (mut ours, mut raw_rates) = (vec![], vec![]);
        for _ in 0..config.rounds {
            let r = resource.clone();
            ours.push(random_reads(
                threads,
                config.random_ops / threads,
                len,
                &(Arc::new(move |at: u64, buf: &mut [u8]| {
                    r.read_at(at, buf).expect("read");
                }) as Reader),
            ));
            let m = Arc::clone(&raw_map);
            raw_rates.push(random_reads(
                threads,
                config.random_ops / threads,
                len,
                &(Arc::new(move |at: u64, buf: &mut [u8]| {
                    let at = at as usize;
                    buf.copy_from_slice(&m[at..at + buf.len()]);
                }) as Reader),
            ));
        }
        let target = if threads == 2 {
            0.8
        } else if threads == 1 {
            0.9
        } else {
            0.0
        };
        table.rate(
            &format!("3/4. 4 KiB random read_at, {threads} thread(s)"),
            &format!("raw memmap2, {threads} thread(s)"),
            median(&mut ours),
            median(&mut raw_rates),
            target,
        );
    }
}

fn run_latencies(config: &Config, dir: &Path, table: &mut Table) {
    let raw = raw::condvar_ping(config.pings);
    for idle in [0, 7, 63] {
        let resource = mmap_at(&dir.join("wake.bin"), None);
        let r = resource.clone();
        let mut ours = wake_latencies(&resource, move || r.waiter_count(), config.pings, idle);
        table.latency(
            &format!("6. wake latency, {} waiter(s)", idle + 1),
            &mut ours,
            Some(raw.clone()),
            3.0,
        );
    }
    let mut cancel = cancel_latencies(config.pings / 4);
    table.latency(
        "7. cancel → blocked waiter returns",
        &mut cancel,
        None,
        1000.0,
    );
}

fn run_scaling(dir: &Path, table: &mut Table) {
    for writes in [4096, 65_536, 1 << 20] {
        let resource = mmap_at(&dir.join("ooo.bin"), Some(writes as u64 * 1024));
        let (write_ns, hit_ns) = out_of_order(&resource, writes);
        drop(resource);
        let raw_ns = raw::pwrite_scattered(&dir.join("ooo-raw.bin"), &shuffled(writes, 99));
        let target = if writes == 65_536 { 0.9 } else { 0.0 };
        table.cost(
            &format!(
                "8. {}k out-of-order 1 KiB writes, presized file",
                writes / 1024
            ),
            write_ns,
            hit_ns,
            "raw 1 KiB pwrite, same order",
            raw_ns,
            target,
        );
    }
}

/// `Atomic::write_all` of small files (`replace_all(data, false)`: the new
/// file's data synced before the rename, the directory not), beside a raw
/// replacement with the same data sync and one without any.
fn run_replacements(config: &Config, dir: &Path, table: &mut Table) {
    let (path, raw_path) = (dir.join("playlist.m3u8"), dir.join("raw.m3u8"));
    for len in [4 * 1024, 100 * 1024] {
        let data = pattern(len);
        let resource = mmap_at(&path, None);
        resource.write_all(&data).expect("first version");
        let (mut ours, mut synced, mut unsynced) = (vec![], vec![], vec![]);
        for _ in 0..config.rounds * 10 {
            let started = Instant::now();
            resource.replace_all(&data, false).expect("replace");
            ours.push(1.0 / started.elapsed().as_secs_f64());
            synced.push(1.0 / raw::replace(&raw_path, &data, true));
            unsynced.push(1.0 / raw::replace(&raw_path, &data, false));
        }
        drop(resource);
        let name = format!("10. replace_all of {} KiB (Atomic::write_all)", len / 1024);
        table.rate(
            &name,
            "raw temp + write + fdatasync + rename",
            median(&mut ours),
            median(&mut synced),
            0.9,
        );
        table.rate(
            &format!("{name}, vs no sync"),
            "raw temp + write + rename",
            median(&mut ours),
            median(&mut unsynced),
            0.0,
        );
    }
}

/// A slow download (200 KB/s, a music track) for 4 s: how many checkpoints
/// (each one `fdatasync`) the time bound of the default `CheckpointPolicy`
/// costs it. Counted from outside: each checkpoint of sequential writes
/// appends one record of one range (24 bytes) to the journal, after its
/// 8-byte magic.
fn run_trickle(dir: &Path, table: &mut Table) {
    let path = dir.join("trickle.mp3");
    let resource = mmap_at(&path, None);
    let chunk = vec![7u8; 8 * 1024];
    let pace = std::time::Duration::from_millis(40);
    let started = Instant::now();
    let mut offset = 0;
    while started.elapsed() < std::time::Duration::from_secs(4) {
        resource.write_at(offset, &chunk).expect("write");
        offset += chunk.len() as u64;
        thread::sleep(pace);
    }
    let seconds = started.elapsed().as_secs_f64();
    let journal = storage_mmap::fs::journal_path(&path);
    let records = (std::fs::metadata(&journal).map_or(8, |m| m.len()) - 8) / 24;
    drop(resource);
    table.count(
        "11. slow download 200 KB/s: checkpoints (fdatasync) per second",
        "per second",
        records as f64 / seconds,
        1.25,
    );
}
