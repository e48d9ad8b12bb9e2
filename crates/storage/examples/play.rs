//! A player: symphonia decodes a FLAC file while it "downloads" into an mmap
//! resource, seeking ahead of the download; the downloader serves what the
//! decoder waits for first, through the demand signal.
//!
//! ```sh
//! cargo run --release --example play --features symphonia
//! cargo run --release --example play --features symphonia -- --rate 50 testdata/sine-noise.mp3
//! ```
//!
//! A downloader thread plays the network: it writes the file (by default
//! `testdata/sine-noise.flac`) in 1 KiB pieces at `--rate` KB/s (default
//! 50), and every jump to another position costs a request's latency
//! (20 ms). It declares the file's length first, as an HTTP client does
//! with `Content-Length`, so symphonia can seek before the last byte lands.
//! The decoder thread hands a `ResourceCursor` to symphonia, decodes half a
//! second, seeks to 2.0 s (ahead of the download), decodes to the end,
//! seeks back to 1.0 s and decodes half a second more.
//!
//! It plays twice: once with a downloader that listens to the demand signal
//! (`AvailabilityObserver::on_wait`: the range a blocked read misses, which
//! it fetches next), once with one that only downloads in order. It prints
//! progress, the codec, the sample rate, the frames decoded, the underruns
//! (reads that had to wait), the seek latencies of both runs, and a
//! checksum of every sample checked against the same plan decoded from the
//! plain bytes; it exits 1 on any mismatch.

use std::{
    io::Cursor,
    ops::Range,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use storage::{
    AvailabilityObserver, CancellationToken, MmapOptions, MmapResource, ResourceCursor, ResourceExt,
};

mod player;

use player::{Played, play};

const CHUNK: u64 = 1024;
const LATENCY: Duration = Duration::from_millis(20);

/// The demand signal, and the count of reads that had to wait.
struct Demand {
    /// Where the downloader hears demands; `None` for the in-order one.
    wanted: Option<Mutex<mpsc::Sender<Range<u64>>>>,
    underruns: AtomicUsize,
}

impl AvailabilityObserver for Demand {
    fn on_commit(&self, _final_len: u64) {}

    fn on_write(&self, _range: Range<u64>) {}

    fn on_wait(&self, range: Range<u64>) {
        self.underruns.fetch_add(1, Ordering::Relaxed);
        if let Some(wanted) = &self.wanted {
            // Never blocks: the channel is unbounded.
            let _ = wanted.lock().send(range);
        }
    }
}

/// Writes `data` into `resource` as a network would at `rate` bytes per
/// second, jumping to each demanded range first when `demands` is given.
fn download(
    resource: &MmapResource,
    data: &[u8],
    rate: f64,
    demands: Option<&mpsc::Receiver<Range<u64>>>,
    label: &str,
) -> storage::StorageResult<()> {
    let len = data.len() as u64;
    resource.set_expected_len(len)?;
    let started = Instant::now();
    let (mut position, mut written, mut quarters) = (0, 0, 0);
    loop {
        let demanded = demands.and_then(|rx| rx.try_iter().last());
        if let Some(range) = demanded
            && !resource.contains_range(range.start..range.start + 1)
        {
            position = range.start;
        }
        let Some(gap) = resource
            .next_gap(position, len)
            .or_else(|| resource.next_gap(0, len))
        else {
            break;
        };
        if gap.start != position {
            thread::sleep(LATENCY); // a new range request
        }
        let end = gap.end.min(gap.start + CHUNK);
        #[allow(clippy::cast_precision_loss, reason = "a chunk's size, far below 2^52")]
        thread::sleep(Duration::from_secs_f64((end - gap.start) as f64 / rate));
        // Within `data`: `gap` lies inside `0..len`.
        let bytes =
            &data[usize::try_from(gap.start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)];
        resource.write_at(gap.start, bytes)?;
        position = end;
        written += end - gap.start;
        if written * 4 >= len * (quarters + 1) {
            quarters += 1;
            println!(
                "  {label}: downloaded {}% at {} ms",
                quarters * 25,
                started.elapsed().as_millis()
            );
        }
    }
    resource.commit(Some(len))
}

/// One "download and play" run; the played sound, the underruns, the time.
fn run(
    dir: &std::path::Path,
    data: &Arc<Vec<u8>>,
    extension: &'static str,
    rate: f64,
    demand: bool,
) -> Result<(Played, usize, Duration), String> {
    let (tx, rx) = mpsc::channel();
    let observer = Arc::new(Demand {
        wanted: demand.then(|| Mutex::new(tx)),
        underruns: AtomicUsize::new(0),
    });
    let name = if demand { "with-demand" } else { "in-order" };
    let resource = MmapResource::open_with_observer(
        CancellationToken::new(),
        MmapOptions::new(dir.join(name)),
        Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let downloader = {
        let (resource, data) = (resource.clone(), Arc::clone(data));
        thread::spawn(move || download(&resource, &data, rate, demand.then_some(&rx), name))
    };
    let cursor = ResourceCursor::new(resource.clone());
    let played = play(Box::new(cursor), extension).map_err(|e| format!("{name}: {e}"))?;
    let elapsed = started.elapsed();
    let outcome = downloader.join().map_err(|_| "the downloader panicked")?;
    outcome.map_err(|e| format!("{name}: download: {e}"))?;
    Ok((played, observer.underruns.load(Ordering::Relaxed), elapsed))
}

fn main() -> ExitCode {
    let mut rate_kb = 50.0;
    let mut file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sine-noise.flac");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => match args.next().and_then(|v| v.parse::<f64>().ok()) {
                Some(rate) if rate > 0.0 => rate_kb = rate,
                _ => {
                    eprintln!("--rate needs a positive number (KB/s)");
                    return ExitCode::from(2);
                }
            },
            _ => file = PathBuf::from(arg),
        }
    }
    let data = match std::fs::read(&file) {
        Ok(data) => Arc::new(data),
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let extension: &'static str = match file.extension().and_then(|e| e.to_str()) {
        Some("mp3") => "mp3",
        Some("wav") => "wav",
        _ => "flac",
    };
    println!(
        "playing {} ({} bytes) while it downloads at {rate_kb} KB/s, {} ms per request",
        file.display(),
        data.len(),
        LATENCY.as_millis()
    );
    let reference = match play(Box::new(Cursor::new(data.to_vec())), extension) {
        Ok(played) => played,
        Err(e) => {
            eprintln!("the plain bytes do not decode: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for demand in [true, false] {
        let label = if demand {
            "with the demand signal"
        } else {
            "in order only"
        };
        match run(dir.path(), &data, extension, rate_kb * 1000.0, demand) {
            Ok((played, underruns, elapsed)) => {
                let same = played.same_sound(&reference);
                ok &= same;
                println!(
                    "{label}: {} at {} Hz, {} frames, {underruns} underruns waited, {} ms in all",
                    played.codec,
                    played.sample_rate,
                    played.frames,
                    elapsed.as_millis()
                );
                println!(
                    "  seek to 2.0 s (ahead of the download): {:.1?}; seek back to 1.0 s: {:.1?}",
                    played.seeks.first().copied().unwrap_or_default(),
                    played.seeks.get(1).copied().unwrap_or_default(),
                );
                println!(
                    "  checksum {:08x} ({}), plain decode {:08x}",
                    played.checksum,
                    if same { "matches" } else { "MISMATCH" },
                    reference.checksum
                );
            }
            Err(e) => {
                ok = false;
                eprintln!("{label}: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
