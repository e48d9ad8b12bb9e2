//! The player the examples share: symphonia decodes a source with a fixed
//! plan of seeks, and every sample goes into a checksum, so two plays of
//! the same bytes compare.

use std::time::{Duration, Instant};

use symphonia::core::{
    audio::{Channels, SampleBuffer},
    codecs::DecoderOptions,
    errors::Error,
    formats::{FormatOptions, SeekMode, SeekTo},
    io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions},
    meta::MetadataOptions,
    probe::Hint,
    units::Time,
};

/// What a play produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Played {
    pub codec: String,
    pub sample_rate: u32,
    pub frames: u64,
    pub checksum: u32,
    /// From each seek to its first decoded packet.
    pub seeks: Vec<Duration>,
}

impl Played {
    pub fn same_sound(&self, other: &Self) -> bool {
        (&self.codec, self.sample_rate, self.frames, self.checksum)
            == (
                &other.codec,
                other.sample_rate,
                other.frames,
                other.checksum,
            )
    }
}

/// The plan: half a second, a seek to 2.0 s, to the end, a seek back to
/// 1.0 s, half a second more. Every sample goes into the checksum.
pub fn play(source: Box<dyn MediaSource>, extension: &str) -> Result<Played, Error> {
    let stream = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let mut format = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )?
        .format;
    let track = format
        .default_track()
        .ok_or(Error::Unsupported("no track"))?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    let codecs = symphonia::default::get_codecs();
    let mut audio_decoder = codecs.make(&params, &DecoderOptions::default())?;
    let mut played = Played {
        codec: codecs
            .get_codec(params.codec)
            .map_or("?", |d| d.short_name)
            .to_owned(),
        sample_rate: params.sample_rate.unwrap_or(0),
        ..Played::default()
    };
    let channels = params.channels.map_or(1, Channels::count) as u64;
    let half_second = u64::from(played.sample_rate / 2);
    let mut hasher = crc32fast::Hasher::new();
    let mut samples: Option<SampleBuffer<i16>> = None;
    for (seek_to, budget) in [
        (None, half_second),
        (Some(2.0), u64::MAX),
        (Some(1.0), half_second),
    ] {
        let started = Instant::now();
        if let Some(seconds) = seek_to {
            format.seek(
                SeekMode::Accurate,
                SeekTo::Time {
                    time: Time::from(seconds),
                    track_id: Some(track_id),
                },
            )?;
            audio_decoder.reset();
        }
        let mut frames = 0;
        while frames < budget {
            let packet = match format.next_packet() {
                Ok(packet) => packet,
                Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            };
            if packet.track_id() != track_id {
                continue;
            }
            let audio = audio_decoder.decode(&packet)?;
            let buffer = samples
                .get_or_insert_with(|| SampleBuffer::new(audio.capacity() as u64, *audio.spec()));
            buffer.copy_interleaved_ref(audio);
            if frames == 0 && seek_to.is_some() {
                played.seeks.push(started.elapsed());
            }
            frames += buffer.samples().len() as u64 / channels;
            for sample in buffer.samples() {
                hasher.update(&sample.to_le_bytes());
            }
        }
        played.frames += frames;
    }
    played.checksum = hasher.finalize();
    Ok(played)
}
