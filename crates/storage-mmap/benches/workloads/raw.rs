//! The raw baselines: what memmap2, pwrite, a `Vec` and a condvar do alone.

#[cfg(unix)]
use std::os::unix::fs::FileExt;
use std::{
    fs::{File, OpenOptions},
    path::Path,
    sync::{Arc, mpsc},
    thread,
    time::Instant,
};

use parking_lot::{Condvar, Mutex};
#[cfg(windows)]
use positional::FileExt;

/// The raw positional write on Windows: `seek_write` until done (as
/// `write_all_at` is `pwrite` until done on Unix).
#[cfg(windows)]
mod positional {
    pub(super) trait FileExt {
        fn write_all_at(&self, data: &[u8], offset: u64) -> std::io::Result<()>;
    }

    impl FileExt for std::fs::File {
        fn write_all_at(&self, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
            while !data.is_empty() {
                let n = std::os::windows::fs::FileExt::seek_write(self, data, offset)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                data = &data[n..];
                offset += n as u64;
            }
            Ok(())
        }
    }
}

/// Removes `path` (outside any timing: the resource's runs start from a
/// removed file too).
fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn fresh(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create")
}

/// memcpy into a presized read-write map of a fresh file: seconds.
pub fn mmap_write(path: &Path, data: &[u8], chunk: usize) -> f64 {
    remove(path);
    let started = Instant::now();
    let file = fresh(path);
    file.set_len(data.len() as u64).expect("size");
    // SAFETY: a fresh file of this benchmark, mapped once, written by this
    // thread only, never truncated while mapped.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file).expect("map") };
    for (i, piece) in data.chunks(chunk).enumerate() {
        map[i * chunk..i * chunk + piece.len()].copy_from_slice(piece);
    }
    drop(map);
    started.elapsed().as_secs_f64()
}

/// `pwrite` of each chunk into a fresh file, then `fdatasync` when
/// `durable` (what a durable write costs without this library): seconds.
pub fn pwrite(path: &Path, data: &[u8], chunk: usize, durable: bool) -> f64 {
    remove(path);
    let started = Instant::now();
    let file = fresh(path);
    for (i, piece) in data.chunks(chunk).enumerate() {
        file.write_all_at(piece, (i * chunk) as u64)
            .expect("pwrite");
    }
    if durable {
        file.sync_data().expect("fdatasync");
    }
    drop(file);
    started.elapsed().as_secs_f64()
}

/// A read-only map of `path`.
pub fn map_read(path: &Path) -> memmap2::Mmap {
    let file = File::open(path).expect("open");
    // SAFETY: the benchmark's committed file, which nothing writes or
    // truncates while the map lives.
    unsafe { memmap2::Mmap::map(&file).expect("map") }
}

/// The raw wake latency: a waiter parked on a `parking_lot` condvar, the
/// notifier sets a value and notifies. Latencies in µs.
pub fn condvar_ping(pings: usize) -> Vec<f64> {
    // (value, waiter is parked)
    let shared = Arc::new((Mutex::new((0u64, false)), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            for i in 0..pings as u64 {
                let mut state = shared.0.lock();
                state.1 = true;
                while state.0 <= i {
                    shared.1.wait(&mut state);
                }
                state.1 = false;
                drop(state);
                tx.send(Instant::now()).expect("send");
            }
        })
    };
    let mut latencies = Vec::with_capacity(pings);
    for i in 0..pings as u64 {
        while !shared.0.lock().1 {
            thread::yield_now();
        }
        let before = Instant::now();
        {
            let mut state = shared.0.lock();
            state.0 = i + 1;
            shared.1.notify_one();
        }
        let woke = rx.recv().expect("recv");
        latencies.push(woke.duration_since(before).as_secs_f64() * 1e6);
    }
    waiter.join().expect("waiter");
    latencies
}

/// 1 KiB `pwrite`s in `order` into a fresh presized file: ns per write.
pub fn pwrite_scattered(path: &Path, order: &[usize]) -> f64 {
    remove(path);
    let file = fresh(path);
    file.set_len(order.len() as u64 * 1024).expect("size");
    let block = [7u8; 1024];
    let started = Instant::now();
    for &i in order {
        file.write_all_at(&block, i as u64 * 1024).expect("pwrite");
    }
    started.elapsed().as_nanos() as f64 / order.len() as f64
}

/// A whole-file replacement without this library: a temporary file beside
/// `path`, written, `fdatasync`ed when `durable`, renamed over `path`.
/// Seconds.
pub fn replace(path: &Path, data: &[u8], durable: bool) -> f64 {
    let temp = path.with_extension("raw.tmp");
    let started = Instant::now();
    let file = fresh(&temp);
    file.write_all_at(data, 0).expect("pwrite");
    if durable {
        file.sync_data().expect("fdatasync");
    }
    drop(file);
    std::fs::rename(&temp, path).expect("rename");
    started.elapsed().as_secs_f64()
}
