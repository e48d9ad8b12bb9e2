//! The fetcher beside its peers, in one run, on 127.0.0.1 (the tests' own
//! server, throttled where a row says so):
//!
//! - a far seek (to 80 % of a 16 MB file, 1 s into a download at 1 MB/s
//!   with 50 ms added per answer): from the seek to 64 KiB read there,
//!   ours (`Fetcher` + `ResourceCursor`) against stream-download 0.24's
//!   `StreamDownload::new_http` (temp-file storage), same server;
//! - time to the first 64 KiB on the same throttled server, both;
//! - 1 GiB unthrottled: `Fetcher::fetch` into a file resource against raw
//!   reqwest `bytes_stream` into a file.
//!
//! `cargo bench -p storage-fetch --bench fetch` (`-- --quick`: 256 MiB,
//! fewer rounds). Medians; ratios are the peer's time over ours (higher is
//! better for us).

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "timings and sizes shown as floating-point figures"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::{Read, Seek, SeekFrom},
    time::{Duration, Instant},
};

use storage_core::{CancellationToken, ResourceCursor};
use storage_fetch::{FetchOptions, Fetcher};
use storage_mmap::{MmapOptions, MmapResource};
use stream_download::{Settings, StreamDownload, storage::temp::TempStorageProvider};
use support::{Plan, content, fault_server};
use tokio::io::AsyncWriteExt;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

const SEEK_LEN: usize = 16_000_000;
const READ: usize = 64 * 1024;

fn throttled(data: &[u8]) -> Plan {
    let mut plan = Plan::new(data.to_vec());
    plan.rate = Some(1_000_000);
    plan.latency = Duration::from_millis(50);
    plan
}

/// Ours: (time to the first 64 KiB, time from a far seek to 64 KiB there).
async fn ours(url: &str, dir: &std::path::Path, round: usize) -> (f64, f64) {
    let resource = MmapResource::open(
        CancellationToken::new(),
        MmapOptions::new(dir.join(format!("ours-{round}"))),
    )
    .expect("open");
    let started = Instant::now();
    let fetch = tokio::spawn({
        let (resource, url) = (resource.clone(), url.to_owned());
        async move {
            Fetcher::new(FetchOptions::default())
                .fetch(resource, &url)
                .await
        }
    });
    let reader = resource.clone();
    let (first, seek) = tokio::task::spawn_blocking(move || {
        let mut cursor = ResourceCursor::new(reader);
        let mut buf = vec![0; READ];
        cursor.read_exact(&mut buf).expect("first read");
        let first = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
        let seeked = Instant::now();
        cursor
            .seek(SeekFrom::Start((SEEK_LEN * 8 / 10) as u64))
            .expect("seek");
        cursor.read_exact(&mut buf).expect("read after the seek");
        (first, seeked.elapsed().as_secs_f64())
    })
    .await
    .expect("reader");
    fetch.abort();
    (first, seek)
}

/// stream-download: the same two times.
async fn peer(url: &str) -> (f64, f64) {
    let started = Instant::now();
    let mut download = StreamDownload::new_http(
        url.parse().expect("url"),
        TempStorageProvider::new(),
        Settings::default(),
    )
    .await
    .expect("stream-download");
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; READ];
        download.read_exact(&mut buf).expect("first read");
        let first = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
        let seeked = Instant::now();
        download
            .seek(SeekFrom::Start((SEEK_LEN * 8 / 10) as u64))
            .expect("seek");
        download.read_exact(&mut buf).expect("read after the seek");
        (first, seeked.elapsed().as_secs_f64())
    })
    .await
    .expect("reader")
}

async fn unthrottled(len: usize, rounds: usize, dir: &std::path::Path) -> (f64, f64) {
    let server = fault_server(Plan::new(content(3, len))).await;
    let (mut ours_s, mut raw_s) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let path = dir.join(format!("big-{round}"));
        let resource =
            MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).expect("open");
        let started = Instant::now();
        Fetcher::new(FetchOptions::default())
            .fetch(resource.clone(), &server.url)
            .await
            .expect("fetch");
        ours_s.push(started.elapsed().as_secs_f64());
        tokio::task::spawn_blocking(move || drop(resource))
            .await
            .expect("drop");
        let _ = std::fs::remove_file(&path);

        let raw_path = dir.join(format!("raw-{round}"));
        let started = Instant::now();
        let mut response = reqwest::get(&server.url).await.expect("raw get");
        let mut file = tokio::fs::File::create(&raw_path).await.expect("raw file");
        while let Some(chunk) = response.chunk().await.expect("raw chunk") {
            file.write_all(&chunk).await.expect("raw write");
        }
        file.flush().await.expect("raw flush");
        raw_s.push(started.elapsed().as_secs_f64());
        drop(file);
        let _ = std::fs::remove_file(&raw_path);
    }
    (median(&mut ours_s), median(&mut raw_s))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, big) = if quick { (3, 256 << 20) } else { (5, 1 << 30) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temporary directory");
    let data = content(2, SEEK_LEN);
    let (mut ours_first, mut ours_seek, mut peer_first, mut peer_seek) =
        (vec![], vec![], vec![], vec![]);
    runtime.block_on(async {
        for round in 0..rounds {
            let server = fault_server(throttled(&data)).await;
            let (first, seek) = ours(&server.url, dir.path(), round).await;
            ours_first.push(first);
            ours_seek.push(seek);
            let server = fault_server(throttled(&data)).await;
            let (first, seek) = peer(&server.url).await;
            peer_first.push(first);
            peer_seek.push(seek);
        }
    });
    let (ours_big, raw_big) = runtime.block_on(unthrottled(big, rounds.min(3), dir.path()));
    let (of, os, pf, ps) = (
        median(&mut ours_first),
        median(&mut ours_seek),
        median(&mut peer_first),
        median(&mut peer_seek),
    );
    println!(
        "| workload | ours (median) | baseline in the same run | ratio (ours / baseline) | target |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| far seek (80 % of 16 MB, 1 MB/s, +50 ms) → 64 KiB read | {:.0} ms | stream-download: {:.0} ms | {:.2} | ≤ 0.8 |",
        os * 1e3,
        ps * 1e3,
        os / ps
    );
    println!(
        "| time to the first 64 KiB (same server) | {:.0} ms | stream-download: {:.0} ms | {:.2} | ≤ 1.0 |",
        of * 1e3,
        pf * 1e3,
        of / pf
    );
    let gb = |seconds: f64| big as f64 / seconds / 1e9;
    println!(
        "| {} MiB over loopback, unthrottled, into a file | {:.2} GB/s | raw reqwest chunks into a file: {:.2} GB/s | {:.2} (throughput) | ≥ 0.9 |",
        big >> 20,
        gb(ours_big),
        gb(raw_big),
        raw_big / ours_big
    );
}
