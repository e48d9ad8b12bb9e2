//! A radio: a track played from a URL while it downloads into a cache,
//! with a seek ahead of the download, then played again from the cache
//! with the server gone.
//!
//! ```sh
//! cargo run --release --example radio --features fetch,symphonia
//! cargo run --release --example radio --features fetch,symphonia -- --rate 100 testdata/sine-noise.mp3
//! ```
//!
//! A small HTTP server on 127.0.0.1 (loopback only) serves the file (by
//! default `testdata/sine-noise.flac`) with range support, throttled to
//! `--rate` KB/s (default 200) with 20 ms per answer. The fetcher
//! (`storage::fetch`) downloads it into a `Cache` entry while symphonia
//! decodes from the entry: half a second, a seek to 2.0 s (ahead of the
//! download: the fetcher hears the decoder's demand and fetches there
//! first), to the end, a seek back to 1.0 s. A progress bar shows the
//! bytes as they land. Then the server stops, the cache is closed and
//! reopened, and the track plays again offline (the fetch makes no
//! request). Every play's checksum is checked against the plain file's;
//! the example exits 1 on any mismatch.

use std::{
    io::Cursor,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use storage::{
    Cache, CacheOptions, CancellationToken, ResourceCursor, ResourceExt, ResourceStatus,
    fetch::{FetchOptions, Fetcher},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

mod player;

use player::{Played, play};

const LATENCY: Duration = Duration::from_millis(20);

/// Serves `data` at `/track` over one connection, honouring `Range`,
/// throttled to `rate` bytes per second.
async fn serve(stream: TcpStream, data: Arc<Vec<u8>>, rate: u64) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut range = None;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("range")
            {
                range = value.trim().strip_prefix("bytes=").map(str::to_owned);
            }
        }
        tokio::time::sleep(LATENCY).await;
        let len = data.len() as u64;
        let asked = range.as_deref().and_then(|r| {
            let (start, end) = r.split_once('-')?;
            let start: u64 = start.parse().ok()?;
            let end = end.parse::<u64>().map_or(len, |end| (end + 1).min(len));
            (start < end).then_some((start, end))
        });
        let (start, end) = asked.unwrap_or((0, len));
        let head = if asked.is_some() {
            format!(
                "HTTP/1.1 206 Partial Content\r\nETag: \"radio-1\"\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\n\r\n",
                end - start,
                end - 1
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nETag: \"radio-1\"\r\nContent-Length: {len}\r\n\r\n")
        };
        write.write_all(head.as_bytes()).await?;
        let piece = usize::try_from(rate / 50).unwrap_or(1024).max(1);
        let body = &data[usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)];
        for part in body.chunks(piece) {
            write.write_all(part).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Shows the bytes of `entry` as they land, until it is committed or `done`.
fn progress(
    entry: storage::CachedResource,
    len: u64,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "  {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !done.load(Ordering::Acquire) {
            let mut present = 0;
            let mut from = 0;
            while let Some(gap) = entry.next_gap(from, len) {
                present += gap.start - from;
                from = gap.end;
            }
            present += len - from;
            bar.set_position(present);
            if matches!(entry.status(), ResourceStatus::Committed { .. }) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        bar.finish_with_message("in the cache");
    })
}

/// Plays the cache entry of `url` while `fetcher` downloads it.
fn play_from(
    runtime: &tokio::runtime::Runtime,
    cache: &Cache,
    url: &str,
    len: u64,
    extension: &str,
) -> Result<(Played, storage::fetch::FetchReport), String> {
    let entry = cache
        .resource(url, CancellationToken::new())
        .map_err(|e| e.to_string())?;
    let fetcher = Fetcher::new(FetchOptions::default());
    let download = runtime.spawn({
        let (entry, url) = (entry.clone(), url.to_owned());
        async move { fetcher.fetch(entry, &url).await }
    });
    let done = Arc::new(AtomicBool::new(false));
    let bar = progress(entry.clone(), len, Arc::clone(&done));
    let played = play(Box::new(ResourceCursor::new(entry.clone())), extension);
    let report = runtime.block_on(download);
    done.store(true, Ordering::Release);
    let _ = bar.join();
    let played = played.map_err(|e| format!("decode: {e}"))?;
    let report = report
        .map_err(|e| format!("the download task: {e}"))?
        .map_err(|e| format!("download: {e}"))?;
    Ok((played, report))
}

fn main() -> ExitCode {
    let mut rate_kb = 200;
    let mut file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sine-noise.flac");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => match args.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(rate) if rate > 0 => rate_kb = rate,
                _ => {
                    eprintln!("--rate needs a positive number (KB/s)");
                    return ExitCode::from(2);
                }
            },
            _ => file = PathBuf::from(arg),
        }
    }
    match run(&file, rate_kb) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(file: &std::path::Path, rate_kb: u64) -> Result<bool, String> {
    let data =
        Arc::new(std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?);
    let extension = match file.extension().and_then(|e| e.to_str()) {
        Some("mp3") => "mp3",
        Some("wav") => "wav",
        _ => "flac",
    };
    let reference = play(Box::new(Cursor::new(data.to_vec())), extension)
        .map_err(|e| format!("the plain bytes do not decode: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/track",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let server = runtime.spawn({
        let data = Arc::clone(&data);
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&data), rate_kb * 1000));
            }
        }
    });
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let options = CacheOptions {
        max_bytes: 256 << 20,
        ..CacheOptions::default()
    };
    println!(
        "radio: {} ({} bytes) from {url}, {rate_kb} KB/s, {} ms per answer",
        file.display(),
        data.len(),
        LATENCY.as_millis()
    );
    let len = data.len() as u64;
    let mut ok = true;
    let mut report_play = |label: &str,
                           played: &Played,
                           report: &storage::fetch::FetchReport,
                           elapsed: Duration| {
        let same = played.same_sound(&reference);
        ok &= same;
        println!(
            "{label}: {} at {} Hz, {} frames in {} ms; {} requests, {} bytes fetched, {} already there",
            played.codec,
            played.sample_rate,
            played.frames,
            elapsed.as_millis(),
            report.requests,
            report.fetched,
            report.skipped
        );
        println!(
            "  seek to 2.0 s (ahead of the download): {:.1?}; seek back to 1.0 s: {:.1?}; checksum {:08x} ({})",
            played.seeks.first().copied().unwrap_or_default(),
            played.seeks.get(1).copied().unwrap_or_default(),
            played.checksum,
            if same {
                "matches the plain file"
            } else {
                "MISMATCH"
            }
        );
    };
    {
        let cache = Cache::open(dir.path(), options.clone()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let (played, report) = play_from(&runtime, &cache, &url, len, extension)?;
        report_play("streamed", &played, &report, started.elapsed());
    }
    // The server goes; the cache is closed and opened again: offline.
    server.abort();
    let cache = Cache::open(dir.path(), options).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (played, report) = play_from(&runtime, &cache, &url, len, extension)?;
    report_play(
        "replayed from the cache, offline",
        &played,
        &report,
        started.elapsed(),
    );
    if report.requests != 0 {
        println!(
            "  the replay made {} requests: expected none",
            report.requests
        );
        ok = false;
    }
    println!("{}", if ok { "OK" } else { "FAILED" });
    Ok(ok)
}
