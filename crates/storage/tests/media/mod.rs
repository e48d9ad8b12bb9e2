//! Test support for the client tests: the media in `testdata/`, a
//! symphonia decode that sums every sample, and a simulated downloader.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use storage::ResourceExt;
use storage_core::testing::shuffled;
use symphonia::core::{
    audio::SampleBuffer,
    codecs::DecoderOptions,
    errors::Error,
    formats::{FormatOptions, SeekMode, SeekTo},
    io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions},
    meta::MetadataOptions,
    probe::Hint,
    units::Time,
};

/// The test media, one per format (see `testdata/README.md`).
pub const MEDIA: [&str; 3] = ["sine-noise.flac", "sine-noise.mp3", "sine-noise.wav"];

/// The path of a file in `testdata/`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// The bytes of a file in `testdata/`.
pub fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("testdata/{name}: {e}"))
}

/// What a decode produced: the codec, the sample rate, how many frames,
/// and a checksum of every sample (interleaved `i16`, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub codec: String,
    pub sample_rate: u32,
    pub frames: u64,
    pub checksum: u32,
}

/// Decodes `source` (a file named `name`) with symphonia: from the start,
/// or from `seek_to` seconds when given (an accurate seek before the first
/// packet). Every sample goes into the checksum.
pub fn decode(
    source: Box<dyn MediaSource>,
    name: &str,
    seek_to: Option<f64>,
) -> Result<Decoded, Error> {
    let stream = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some((_, extension)) = name.rsplit_once('.') {
        hint.with_extension(extension);
    }
    let probed = symphonia::default::get_probe().format(
        &hint,
        stream,
        &FormatOptions::default(),
        &MetadataOptions::default(),
    )?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or(Error::Unsupported("no track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let mut codec_decoder =
        symphonia::default::get_codecs().make(&params, &DecoderOptions::default())?;
    let codec = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .map_or_else(
            || format!("{:?}", params.codec),
            |d| d.short_name.to_owned(),
        );
    if let Some(seconds) = seek_to {
        format.seek(
            SeekMode::Accurate,
            SeekTo::Time {
                time: Time::from(seconds),
                track_id: Some(track_id),
            },
        )?;
        codec_decoder.reset();
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut frames = 0;
    let mut samples: Option<SampleBuffer<i16>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(Error::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = codec_decoder.decode(&packet)?;
        let buffer = samples
            .get_or_insert_with(|| SampleBuffer::new(audio.capacity() as u64, *audio.spec()));
        buffer.copy_interleaved_ref(audio);
        frames += (buffer.samples().len()
            / params
                .channels
                .map_or(1, symphonia::core::audio::Channels::count)) as u64;
        for sample in buffer.samples() {
            hasher.update(&sample.to_le_bytes());
        }
    }
    Ok(Decoded {
        codec,
        sample_rate: params.sample_rate.unwrap_or(0),
        frames,
        checksum: hasher.finalize(),
    })
}

/// Deterministic small delays (0 to 2 ms), so a failure reproduces.
fn delay(seed: u64, i: usize) -> Duration {
    let mixed = (seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(31);
    Duration::from_micros(mixed % 2000)
}

/// A downloader thread writing `data` into `resource` in `chunk`-byte
/// pieces in a shuffled order with small random delays, holding the chunks
/// of `held` (a byte range) back until `release` is set; it declares the
/// expected length first when `expected` is set, and commits at the end.
pub struct Download {
    pub release: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Download {
    pub fn start<R: ResourceExt + Clone>(
        resource: &R,
        data: &[u8],
        chunk: usize,
        held: std::ops::Range<usize>,
        expected: bool,
        seed: u64,
    ) -> Self {
        let release = Arc::new(AtomicBool::new(held.is_empty()));
        let (resource, data, gate) = (resource.clone(), data.to_vec(), Arc::clone(&release));
        let thread = thread::spawn(move || {
            if expected {
                resource.set_expected_len(data.len() as u64).unwrap();
            }
            let chunks = data.len().div_ceil(chunk);
            let is_held = |i: usize| i * chunk < held.end && held.start < (i + 1) * chunk;
            let order = shuffled(chunks, seed);
            let (late, early): (Vec<usize>, Vec<usize>) =
                order.into_iter().partition(|&i| is_held(i));
            for (n, i) in early.into_iter().enumerate() {
                thread::sleep(delay(seed, n));
                let end = ((i + 1) * chunk).min(data.len());
                resource
                    .write_at((i * chunk) as u64, &data[i * chunk..end])
                    .unwrap();
            }
            let deadline = std::time::Instant::now() + storage_core::testing::LIMIT;
            while !gate.load(Ordering::Acquire) {
                assert!(std::time::Instant::now() < deadline, "never released");
                thread::sleep(Duration::from_millis(1));
            }
            for i in late {
                let end = ((i + 1) * chunk).min(data.len());
                resource
                    .write_at((i * chunk) as u64, &data[i * chunk..end])
                    .unwrap();
            }
            resource.commit(Some(data.len() as u64)).unwrap();
        });
        Self { release, thread }
    }

    /// Waits for the downloader (bounded).
    pub fn finish(self) {
        storage_core::testing::within("downloader", move || self.thread.join().unwrap());
    }
}
