//! Criterion micro-benchmarks of the per-call hot paths, each beside its raw
//! baseline in the same group: a 4 KiB `read_at` of a committed file, a
//! `wait_range` / `contains_range` hit, a 1 KiB `write_at`, and the
//! checkpoint hand-off (a `Mutex<Vec>`, as in `checkpoint.rs`, against
//! crossbeam-queue's `SegQueue`).
//!
//! `cargo bench -p storage-mmap --bench micro`. The throughput workloads,
//! latencies and the summary table are in the facade's `benches/workloads`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use storage_core::{CancellationToken, ResourceExt};
use storage_mmap::{MmapOptions, MmapResource};

const LEN: u64 = 64 << 20;

/// The raw positional write: `pwrite` on Unix, `seek_write` on Windows.
#[cfg(unix)]
fn raw_write_at(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

/// The raw positional write: `pwrite` on Unix, `seek_write` on Windows.
#[cfg(windows)]
fn raw_write_at(file: &std::fs::File, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, data, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

fn offsets() -> impl FnMut() -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % (LEN - 4096)) & !4095
    }
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("micro.bin");
    let resource =
        MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).expect("open");
    resource
        .write_all(&vec![7u8; usize::try_from(LEN).expect("64 MiB")])
        .expect("write");
    let file = std::fs::File::open(&path).expect("open");
    // SAFETY: the committed benchmark file, which nothing writes or
    // truncates while this map lives.
    let raw = unsafe { memmap2::Mmap::map(&file).expect("map") };

    let mut group = c.benchmark_group("read_at 4 KiB, committed");
    let mut buf = vec![0u8; 4096];
    let mut next = offsets();
    group.bench_function("raw memmap2 memcpy", |b| {
        b.iter(|| {
            let at = usize::try_from(next()).expect("offset");
            buf.copy_from_slice(&raw[at..at + 4096]);
            black_box(&buf);
        });
    });
    let mut next = offsets();
    group.bench_function("MmapResource::read_at", |b| {
        b.iter(|| black_box(resource.read_at(next(), &mut buf).expect("read")));
    });
    group.finish();

    let mut group = c.benchmark_group("hit on a written range");
    let mut next = offsets();
    group.bench_function("wait_range", |b| {
        b.iter(|| {
            let at = next();
            black_box(resource.wait_range(at..at + 4096).expect("wait"))
        });
    });
    let mut next = offsets();
    group.bench_function("contains_range", |b| {
        b.iter(|| {
            let at = next();
            black_box(resource.contains_range(at..at + 4096))
        });
    });
    group.finish();
}

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let block = [5u8; 1024];
    let mut group = c.benchmark_group("write 1 KiB at a random offset, presized file");
    let raw_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw.bin"))
        .expect("create");
    raw_file.set_len(LEN).expect("size");
    let mut next = offsets();
    group.bench_function("raw pwrite", |b| {
        b.iter(|| raw_write_at(&raw_file, &block, next()).expect("pwrite"));
    });
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions {
            path: dir.path().join("ours.bin"),
            initial_len: Some(LEN),
            mode: storage_mmap::OpenMode::Auto,
        },
    )
    .expect("open");
    let mut next = offsets();
    group.bench_function("MmapResource::write_at", |b| {
        b.iter(|| resource.write_at(next(), &block).expect("write"));
    });
    group.finish();
}

/// What the writer does per write to hand its range to the checkpoint
/// thread, which drains the ranges every millisecond meanwhile.
fn hand_off(c: &mut Criterion) {
    use std::{
        ops::Range,
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        },
        thread,
        time::Duration,
    };

    #[derive(Default)]
    struct Pending {
        ranges: Vec<Range<u64>>,
        bytes: u64,
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut group = c.benchmark_group("checkpoint hand-off of one 1 KiB range");

    let pending = Arc::new(parking_lot::Mutex::new(Pending::default()));
    let drainer = {
        let (pending, stop) = (Arc::clone(&pending), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
                let mut pending = pending.lock();
                pending.bytes = 0;
                black_box(std::mem::take(&mut pending.ranges));
            }
        })
    };
    let mut at = 0u64;
    group.bench_function("parking_lot Mutex<Vec> (ours)", |b| {
        b.iter(|| {
            let mut pending = pending.lock();
            pending.bytes += 1024;
            pending.ranges.push(at..at + 1024);
            at += 1024;
            black_box(pending.bytes >= 8 << 20)
        });
    });
    stop.store(true, Ordering::Relaxed);
    drainer.join().expect("drainer");

    stop.store(false, Ordering::Relaxed);
    let queue = Arc::new(crossbeam_queue::SegQueue::<Range<u64>>::new());
    let bytes = Arc::new(AtomicU64::new(0));
    let drainer = {
        let (queue, bytes, stop) = (Arc::clone(&queue), Arc::clone(&bytes), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
                bytes.store(0, Ordering::Relaxed);
                let mut ranges = Vec::new();
                while let Some(range) = queue.pop() {
                    ranges.push(range);
                }
                black_box(ranges);
            }
        })
    };
    let mut at = 0u64;
    group.bench_function("crossbeam SegQueue + AtomicU64", |b| {
        b.iter(|| {
            queue.push(at..at + 1024);
            at += 1024;
            black_box(bytes.fetch_add(1024, Ordering::AcqRel) + 1024 >= 8 << 20)
        });
    });
    stop.store(true, Ordering::Relaxed);
    drainer.join().expect("drainer");
    group.finish();
}

criterion_group!(benches, reads, writes, hand_off);
criterion_main!(benches);
