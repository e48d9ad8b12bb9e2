//! A decoder reading a WAV file through `ResourceCursor` while it downloads.
//!
//! ```sh
//! cargo run --release --example decode
//! ```
//!
//! A tokio task plays the downloader: it writes a generated 20-second stereo
//! WAV file (a 440 Hz tone, 16-bit PCM) into an mmap resource in 16 KiB
//! chunks at a simulated network rate. A decoder thread wraps the resource
//! in a `ResourceCursor` — a plain `Read + Seek` — parses the RIFF header by
//! hand and reads frames as they land, blocking only when it catches up
//! with the download. It checks every sample against the generator and
//! exits 1 on any mismatch.
//!
//! The `play` example does the same with a real codec (symphonia, feature
//! `symphonia`) and seeks; this one needs no feature and shows the bare
//! `Read + Seek` contract: what a hand-written parser gets from the cursor.

use std::{
    io::{self, BufReader, Read, Seek, SeekFrom},
    process::ExitCode,
    time::{Duration, Instant},
};

use storage::{
    CancellationToken, MmapOptions, MmapResource, ResourceCursor, ResourceExt, StorageResource,
};

const RATE: u32 = 44_100;
const CHANNELS: u16 = 2;
const SECONDS: u32 = 20;
const CHUNK: usize = 16 * 1024;

/// The sample of `channel` in frame `frame`: a 440 Hz tone, the right
/// channel at half volume.
fn sample(frame: u32, channel: u16) -> i16 {
    let phase = f64::from(frame) * 440.0 * std::f64::consts::TAU / f64::from(RATE);
    let amplitude = if channel == 0 { 12_000.0 } else { 6_000.0 };
    // |amplitude * sin| <= 12_000, well inside i16.
    #[allow(clippy::cast_possible_truncation, reason = "bounded by the amplitude")]
    let value = (phase.sin() * amplitude).round() as i16;
    value
}

fn wav_file() -> Vec<u8> {
    let frames = RATE * SECONDS;
    let data_len = frames * u32::from(CHANNELS) * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&CHANNELS.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * u32::from(CHANNELS) * 2).to_le_bytes());
    out.extend_from_slice(&(CHANNELS * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for frame in 0..frames {
        for channel in 0..CHANNELS {
            out.extend_from_slice(&sample(frame, channel).to_le_bytes());
        }
    }
    out
}

/// What the RIFF header says.
struct Format {
    channels: u16,
    rate: u32,
    bits: u16,
    data_len: u32,
}

fn read_u32(reader: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0; 4];
    reader.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u16(reader: &mut impl Read) -> io::Result<u16> {
    let mut bytes = [0; 2];
    reader.read_exact(&mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

/// Parses `RIFF....WAVE`, then chunks until `data`, skipping unknown ones
/// with a seek; leaves the reader at the first frame.
fn parse_header(reader: &mut (impl Read + Seek)) -> io::Result<Format> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut tag = [0; 4];
    reader.read_exact(&mut tag)?;
    let _riff_len = read_u32(reader)?;
    let mut form = [0; 4];
    reader.read_exact(&mut form)?;
    if &tag != b"RIFF" || &form != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut format = None;
    loop {
        reader.read_exact(&mut tag)?;
        let len = read_u32(reader)?;
        match &tag {
            b"fmt " => {
                let pcm = read_u16(reader)?;
                let channels = read_u16(reader)?;
                let rate = read_u32(reader)?;
                let _byte_rate = read_u32(reader)?;
                let _block_align = read_u16(reader)?;
                let bits = read_u16(reader)?;
                if pcm != 1 || bits != 16 {
                    return Err(bad("only 16-bit PCM is decoded here"));
                }
                reader.seek(SeekFrom::Current(i64::from(len) - 16))?;
                format = Some((channels, rate, bits));
            }
            b"data" => {
                let (channels, rate, bits) = format.ok_or_else(|| bad("data before fmt"))?;
                return Ok(Format {
                    channels,
                    rate,
                    bits,
                    data_len: len,
                });
            }
            _ => {
                reader.seek(SeekFrom::Current(i64::from(len)))?;
            }
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("decode: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let file = wav_file();
    let dir = tempfile::tempdir()?;
    let resource = StorageResource::from(MmapResource::open(
        CancellationToken::new(),
        MmapOptions::new(dir.path().join("tone.wav")),
    )?);
    println!(
        "decode: {} KiB WAV, downloading in {} KiB chunks",
        file.len() / 1024,
        CHUNK / 1024
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let downloader = {
        let resource = resource.clone();
        runtime.spawn(async move {
            for (i, chunk) in file.chunks(CHUNK).enumerate() {
                resource.write_at((i * CHUNK) as u64, chunk)?;
                tokio::time::sleep(Duration::from_millis(2)).await; // the network
            }
            resource.commit(Some(file.len() as u64))
        })
    };

    let started = Instant::now();
    let mut cursor = BufReader::with_capacity(8192, ResourceCursor::new(resource.clone()));
    let format = parse_header(&mut cursor)?;
    println!(
        "  header: {} channel(s), {} Hz, {} bit, {} bytes of frames (parsed after {:.1} ms)",
        format.channels,
        format.rate,
        format.bits,
        format.data_len,
        started.elapsed().as_secs_f64() * 1e3
    );
    let frames = format.data_len / (u32::from(format.channels) * 2);
    let (mut mismatches, mut peak) = (0u64, 0i16);
    let mut frame_bytes = vec![0; usize::from(format.channels) * 2];
    for frame in 0..frames {
        cursor.read_exact(&mut frame_bytes)?;
        for channel in 0..format.channels {
            let at = usize::from(channel) * 2;
            let value = i16::from_le_bytes([frame_bytes[at], frame_bytes[at + 1]]);
            peak = peak.max(value.saturating_abs());
            if value != sample(frame, channel) {
                mismatches += 1;
            }
        }
        if (frame + 1) % (format.rate * 5) == 0 {
            println!(
                "  decoded {:>2} s of audio after {:6.1} ms, peak {peak}",
                (frame + 1) / format.rate,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    let mut rest = Vec::new();
    cursor.read_to_end(&mut rest)?;
    runtime.block_on(downloader)??;
    let ok = mismatches == 0
        && rest.is_empty()
        && resource.len() == Some(u64::from(format.data_len) + 44);
    println!(
        "summary: {frames} frames decoded in {:.1} ms while downloading, {mismatches} samples differ, peak {peak}: {}",
        started.elapsed().as_secs_f64() * 1e3,
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok(ok)
}
