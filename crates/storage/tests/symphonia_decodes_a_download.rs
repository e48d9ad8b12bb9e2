//! Symphonia decodes each test file (FLAC, MP3, WAV) through
//! `ResourceCursor` over an mmap resource that a downloader thread fills
//! out of order, and every sample equals a decode of the plain file: from
//! the start, after a seek to the middle before the middle has arrived,
//! and with `interrupt()` firing all along. Cancelling stops a decode
//! blocked in a read; without a length, FLAC refuses to seek at once.

mod media;

use std::{
    fs::File,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use media::{Decoded, Download, MEDIA, bytes, decode, path};
use storage::{
    AvailabilityObserver, CancellationToken, MmapOptions, MmapResource, ResourceCursor,
    ResourceExt, StorageError,
};
use storage_core::testing::{LIMIT, wait_for_count, within};
use symphonia::core::{
    errors::{Error, SeekErrorKind},
    io::MediaSource,
};

/// Small files (300 KiB in all), so small chunks: 8 KiB gives 3 to 17 per file.
const CHUNK: usize = 8 * 1024;

fn plain(name: &str, seek_to: Option<f64>) -> Decoded {
    let file = File::open(path(name)).unwrap();
    let decoded = decode(Box::new(file), name, seek_to).unwrap();
    assert!(decoded.frames > 0, "{name}: no frame decoded");
    decoded
}

fn open(
    dir: &tempfile::TempDir,
    name: &str,
    cancel: CancellationToken,
    observer: Option<Arc<dyn AvailabilityObserver>>,
) -> MmapResource {
    MmapResource::open_with_observer(cancel, MmapOptions::new(dir.path().join(name)), observer)
        .unwrap()
}

fn decode_in_thread(
    resource: &MmapResource,
    name: &'static str,
    seek_to: Option<f64>,
) -> thread::JoinHandle<Result<Decoded, Error>> {
    let cursor = ResourceCursor::new(resource.clone());
    thread::spawn(move || decode(Box::new(cursor), name, seek_to))
}

#[test]
fn every_sample_decoded_from_a_download_equals_the_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, name) in (1..).zip(MEDIA) {
        let expected = plain(name, None);
        let resource = open(&dir, name, CancellationToken::new(), None);
        let download = Download::start(&resource, &bytes(name), CHUNK, 0..0, true, seed);
        let job = decode_in_thread(&resource, name, None);
        let decoded = within("decode", move || job.join().unwrap()).unwrap();
        download.finish();
        assert_eq!(decoded, expected, "{name}");
        println!("{name}: {decoded:?}");
    }
}

/// Releases the held part of a download once a reader blocks inside it.
struct ReleaseOnDemand {
    held: Range<u64>,
    release: Arc<AtomicBool>,
    demands_inside: AtomicUsize,
}

impl AvailabilityObserver for ReleaseOnDemand {
    fn on_commit(&self, _final_len: u64) {}

    fn on_write(&self, _range: Range<u64>) {}

    fn on_wait(&self, range: Range<u64>) {
        if self.held.contains(&range.start) {
            self.demands_inside.fetch_add(1, Ordering::SeqCst);
            self.release.store(true, Ordering::Release);
        }
    }
}

#[test]
fn a_seek_to_the_middle_before_it_arrived_decodes_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, name) in (10..).zip(MEDIA) {
        let data = bytes(name);
        let expected = plain(name, Some(1.5));
        // The middle third arrives only once the decoder waits inside it.
        // (Whole chunks: the downloader holds back every chunk it touches.)
        let held = data.len() / 3 / CHUNK * CHUNK..(data.len() * 2 / 3).div_ceil(CHUNK) * CHUNK;
        let release = Arc::new(AtomicBool::new(false));
        let observer = Arc::new(ReleaseOnDemand {
            held: held.start as u64..held.end as u64,
            release: Arc::clone(&release),
            demands_inside: AtomicUsize::new(0),
        });
        let resource = open(
            &dir,
            name,
            CancellationToken::new(),
            Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
        );
        let download = Download::start(&resource, &data, CHUNK, held.clone(), true, seed);
        let gate = Arc::clone(&download.release);
        let forward = thread::spawn(move || {
            let deadline = std::time::Instant::now() + LIMIT;
            while !release.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            gate.store(true, Ordering::Release);
        });
        let job = decode_in_thread(&resource, name, Some(1.5));
        let decoded = within("decode after a seek", move || job.join().unwrap()).unwrap();
        forward.join().unwrap();
        download.finish();
        assert!(
            observer.demands_inside.load(Ordering::SeqCst) > 0,
            "{name}: the decoder never waited inside the held middle"
        );
        assert_eq!(decoded, expected, "{name}");
    }
}

/// Interrupts the resource from inside every other demand signal: the
/// reader that just registered its wait is certainly hit.
#[derive(Default)]
struct InterruptOnDemand {
    resource: std::sync::OnceLock<MmapResource>,
    waits: AtomicUsize,
}

impl AvailabilityObserver for InterruptOnDemand {
    fn on_commit(&self, _final_len: u64) {}

    fn on_write(&self, _range: Range<u64>) {}

    fn on_wait(&self, _range: Range<u64>) {
        // Every other one, or the retried wait would be interrupted forever.
        if self.waits.fetch_add(1, Ordering::SeqCst).is_multiple_of(2)
            && let Some(resource) = self.resource.get()
        {
            resource.interrupt();
        }
    }
}

#[test]
fn interrupts_firing_during_playback_change_no_sample() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, name) in (20..).zip(MEDIA) {
        for seek_to in [None, Some(1.0)] {
            let expected = plain(name, seek_to);
            let file = format!("{name}-{seek_to:?}");
            let observer = Arc::new(InterruptOnDemand::default());
            let resource = open(
                &dir,
                &file,
                CancellationToken::new(),
                Some(Arc::clone(&observer) as Arc<dyn AvailabilityObserver>),
            );
            assert!(observer.resource.set(resource.clone()).is_ok());
            // And from another thread, at random instants.
            let stop = Arc::new(AtomicBool::new(false));
            let interrupter = {
                let (resource, stop) = (resource.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        resource.interrupt();
                        thread::sleep(Duration::from_micros(100));
                    }
                })
            };
            // The decoder starts first: its first read certainly waits.
            let job = decode_in_thread(&resource, name, seek_to);
            let deadline = std::time::Instant::now() + LIMIT;
            while observer.waits.load(Ordering::SeqCst) < 2 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name}: no read waited"
                );
                thread::sleep(Duration::from_millis(1));
            }
            let download = Download::start(&resource, &bytes(name), CHUNK, 0..0, true, seed);
            let decoded = within("interrupted decode", move || job.join().unwrap());
            stop.store(true, Ordering::Release);
            interrupter.join().unwrap();
            download.finish();
            assert_eq!(decoded.unwrap(), expected, "{name} from {seek_to:?}");
        }
    }
}

#[test]
fn cancelling_stops_a_decode_blocked_in_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let name = "sine-noise.flac";
    let data = bytes(name);
    let cancel = CancellationToken::new();
    let resource = open(&dir, name, cancel.clone(), None);
    resource.set_expected_len(data.len() as u64).unwrap();
    resource.write_at(0, &data[..data.len() / 2]).unwrap();
    let job = decode_in_thread(&resource, name, None);
    wait_for_count("decoder blocked", 1, || resource.waiter_count());
    cancel.cancel();
    let result = within("cancelled decode", move || job.join().unwrap());
    let Err(Error::IoError(error)) = result else {
        panic!("expected an io error, got {result:?}");
    };
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<StorageError>());
    assert!(matches!(inner, Some(StorageError::Cancelled)), "{error:?}");
}

#[test]
fn without_a_length_flac_refuses_to_seek_at_once_and_decodes_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let name = "sine-noise.flac";
    let data = bytes(name);
    let resource = open(&dir, name, CancellationToken::new(), None);
    resource.write_at(0, &data).unwrap();
    // Not committed, no expected length: `byte_len` is None.
    assert_eq!(ResourceCursor::new(resource.clone()).byte_len(), None);
    let job = decode_in_thread(&resource, name, Some(1.5));
    let result = within("seek without a length", move || job.join().unwrap());
    assert!(
        matches!(result, Err(Error::SeekError(SeekErrorKind::Unseekable))),
        "{result:?}"
    );
    resource.commit(None).unwrap();
    let job = decode_in_thread(&resource, name, None);
    let decoded = within("decode without a length", move || job.join().unwrap());
    assert_eq!(decoded.unwrap(), plain(name, None));
}
