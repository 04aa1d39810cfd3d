//! Tracks and the boxes that describe them: sample entries (`avc1` + `avcC`, `mp4a` + `esds`),
//! `trak`, `mvhd`, and the fragmented file's init segment (`ftyp` + `moov` with `mvex`).
//!
//! The `trak` writer is shared with progressive files (the playback builder writes real sample
//! tables where an init segment writes empty ones).

use super::boxes::BoxWriter;
use crate::media::{AudioSpecificConfig, AvcDecoderConfig, MediaError};

/// The timescale of video tracks: 90 kHz, so millisecond timestamps convert exactly.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// The movie timescale (`mvhd`): milliseconds.
pub const MOVIE_TIMESCALE: u32 = 1000;
/// Track ids are fixed by kind, so a reader knows a track without the `moov`.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;

/// Samples in one AAC-LC frame.
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// How a track's samples are coded: the sample entry of its `stsd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleEntry {
    /// H.264 with its `avcC` record (AVCDecoderConfigurationRecord), as FLV carries it.
    Avc {
        avcc: Vec<u8>,
        width: u32,
        height: u32,
    },
    /// AAC with its AudioSpecificConfig.
    Aac {
        asc: Vec<u8>,
        sample_rate: u32,
        channels: u8,
        object_type: u8,
    },
}

impl SampleEntry {
    /// An H.264 entry from an `avcC` record; its SPS gives the picture size.
    pub fn avc(avcc: &[u8]) -> Result<SampleEntry, MediaError> {
        let config = AvcDecoderConfig::parse(avcc)?;
        if config.length_size != 4 {
            return Err(MediaError::Invalid {
                what: "avcC",
                detail: "NAL length size other than 4 bytes",
            });
        }
        let sps = config.parsed_sps()?;
        Ok(SampleEntry::Avc {
            avcc: avcc.to_vec(),
            width: sps.width,
            height: sps.height,
        })
    }

    /// An AAC entry from an AudioSpecificConfig.
    pub fn aac(asc: &[u8]) -> Result<SampleEntry, MediaError> {
        let parsed = AudioSpecificConfig::parse(asc)?;
        if parsed.sample_rate == 0 {
            return Err(MediaError::Invalid {
                what: "AudioSpecificConfig",
                detail: "sample rate 0",
            });
        }
        Ok(SampleEntry::Aac {
            asc: asc.to_vec(),
            sample_rate: parsed.sample_rate,
            channels: parsed.channels,
            object_type: parsed.object_type,
        })
    }

    pub fn is_video(&self) -> bool {
        matches!(self, SampleEntry::Avc { .. })
    }

    /// Ticks per second of the track's media time.
    pub fn timescale(&self) -> u32 {
        match self {
            SampleEntry::Avc { .. } => VIDEO_TIMESCALE,
            SampleEntry::Aac { sample_rate, .. } => *sample_rate,
        }
    }

    /// The track id this entry's track has.
    pub fn track_id(&self) -> u32 {
        match self {
            SampleEntry::Avc { .. } => VIDEO_TRACK,
            SampleEntry::Aac { .. } => AUDIO_TRACK,
        }
    }

    /// The RFC 6381 codec string (HLS `CODECS`, MSE): `avc1.64001f`, `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            SampleEntry::Avc { avcc, .. } => match avcc.get(1..4) {
                Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                None => "avc1".to_owned(),
            },
            SampleEntry::Aac { object_type, .. } => format!("mp4a.40.{object_type}"),
        }
    }

    /// A short description for the API: `h264 1280x720`, `aac 48000 Hz 2 ch`.
    pub fn describe(&self) -> String {
        match self {
            SampleEntry::Avc { width, height, .. } => format!("h264 {width}x{height}"),
            SampleEntry::Aac {
                sample_rate,
                channels,
                ..
            } => format!("aac {sample_rate} Hz {channels} ch"),
        }
    }

    /// Writes the entry (inside an `stsd`).
    pub(crate) fn write(&self, w: &mut BoxWriter) {
        match self {
            SampleEntry::Avc {
                avcc,
                width,
                height,
            } => {
                let b = w.open(b"avc1");
                w.zeros(6); // reserved
                w.u16(1); // data_reference_index
                w.zeros(16); // pre_defined, reserved
                w.u16((*width).min(0xffff) as u16);
                w.u16((*height).min(0xffff) as u16);
                w.u32(0x0048_0000); // 72 dpi
                w.u32(0x0048_0000);
                w.u32(0); // reserved
                w.u16(1); // frame_count
                w.zeros(32); // compressorname
                w.u16(0x0018); // depth
                w.u16(0xffff); // pre_defined = -1
                let c = w.open(b"avcC");
                w.bytes(avcc);
                w.close(c);
                w.close(b);
            }
            SampleEntry::Aac {
                asc,
                sample_rate,
                channels,
                ..
            } => {
                let b = w.open(b"mp4a");
                w.zeros(6);
                w.u16(1); // data_reference_index
                w.zeros(8); // reserved
                w.u16(u16::from(*channels).max(1));
                w.u16(16); // samplesize
                w.u32(0); // pre_defined, reserved
                          // The 16.16 field holds rates up to 65535 Hz; higher AAC rates (88.2/96 kHz)
                          // are told by the AudioSpecificConfig, which decoders read instead.
                w.u32((*sample_rate).min(0xffff) << 16);
                let e = w.open_full(b"esds", 0, 0);
                write_es_descriptor(w, asc);
                w.close(e);
                w.close(b);
            }
        }
    }
}

/// The MPEG-4 ES_Descriptor of an AAC track (ISO/IEC 14496-1 §7.2.6.5).
fn write_es_descriptor(w: &mut BoxWriter, asc: &[u8]) {
    let dsi = descriptor(0x05, asc);
    let mut dcd = vec![0x40, 0x15]; // AAC (Audio ISO/IEC 14496-3), audio stream
    dcd.extend_from_slice(&[0, 0, 0]); // bufferSizeDB
    dcd.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate: not known up front
    dcd.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate
    dcd.extend_from_slice(&dsi);
    let dcd = descriptor(0x04, &dcd);
    let sl = descriptor(0x06, &[0x02]);
    let mut es = AUDIO_TRACK.to_be_bytes()[2..].to_vec(); // ES_ID
    es.push(0); // no dependency, URL or OCR stream
    es.extend_from_slice(&dcd);
    es.extend_from_slice(&sl);
    w.bytes(&descriptor(0x03, &es));
}

/// A descriptor: tag, expandable size (7 bits a byte), body.
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    let mut groups = Vec::new();
    let mut rest = len;
    loop {
        groups.push((rest & 0x7f) as u8);
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().rev().enumerate() {
        let more = i + 1 < groups.len();
        out.push(g | if more { 0x80 } else { 0 });
    }
    out.extend_from_slice(body);
    out
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `mvhd`: the movie's timescale (ms), duration in it, and the next free track id.
pub(crate) fn write_mvhd(w: &mut BoxWriter, duration_ms: u64, next_track_id: u32) {
    let wide = duration_ms > u64::from(u32::MAX);
    let b = w.open_full(b"mvhd", u8::from(wide), 0);
    times(w, wide, duration_ms, MOVIE_TIMESCALE);
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    for m in MATRIX {
        w.u32(m);
    }
    w.zeros(24); // pre_defined
    w.u32(next_track_id);
    w.close(b);
}

/// creation and modification time (0: unknown), then the timescale (if given), then duration.
fn times(w: &mut BoxWriter, wide: bool, duration: u64, timescale: u32) {
    if wide {
        w.u64(0);
        w.u64(0);
        w.u32(timescale);
        w.u64(duration);
    } else {
        w.u32(0);
        w.u32(0);
        w.u32(timescale);
        w.u32(duration as u32);
    }
}

/// A `trak`: `tkhd`, then `mdia` down to an `stbl` whose `stsd` holds `entries` (all of one
/// kind), followed by whatever `tables` writes (empty tables for a fragmented file, the
/// sample tables of a progressive one). Durations: `movie_duration` in ms, `media_duration`
/// in the track's timescale.
pub(crate) fn write_trak(
    w: &mut BoxWriter,
    entries: &[&SampleEntry],
    movie_duration: u64,
    media_duration: u64,
    tables: impl FnOnce(&mut BoxWriter),
) {
    let first = entries[0];
    let video = first.is_video();
    let trak = w.open(b"trak");
    let wide = movie_duration > u64::from(u32::MAX);
    let tkhd = w.open_full(b"tkhd", u8::from(wide), 0x000003); // enabled, in movie
    if wide {
        w.u64(0);
        w.u64(0);
        w.u32(first.track_id());
        w.u32(0);
        w.u64(movie_duration);
    } else {
        w.u32(0);
        w.u32(0);
        w.u32(first.track_id());
        w.u32(0);
        w.u32(movie_duration as u32);
    }
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if video { 0 } else { 0x0100 }); // volume
    w.u16(0);
    for m in MATRIX {
        w.u32(m);
    }
    let (width, height) = match first {
        SampleEntry::Avc { width, height, .. } => (*width, *height),
        SampleEntry::Aac { .. } => (0, 0),
    };
    w.u32(width.min(0xffff) << 16);
    w.u32(height.min(0xffff) << 16);
    w.close(tkhd);

    let mdia = w.open(b"mdia");
    let wide = media_duration > u64::from(u32::MAX);
    let mdhd = w.open_full(b"mdhd", u8::from(wide), 0);
    times(w, wide, media_duration, first.timescale());
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.close(mdhd);
    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video {
        b"moment video\0"
    } else {
        b"moment audio\0"
    });
    w.close(hdlr);
    let minf = w.open(b"minf");
    if video {
        let vmhd = w.open_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.close(vmhd);
    } else {
        let smhd = w.open_full(b"smhd", 0, 0);
        w.zeros(4);
        w.close(smhd);
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.open_full(b"url ", 0, 1); // media in this file
    w.close(url);
    w.close(dref);
    w.close(dinf);
    let stbl = w.open(b"stbl");
    let stsd = w.open_full(b"stsd", 0, 0);
    w.u32(entries.len() as u32);
    for e in entries {
        e.write(w);
    }
    w.close(stsd);
    tables(w);
    w.close(stbl);
    w.close(minf);
    w.close(mdia);
    w.close(trak);
}

/// `ftyp`, the same for fragmented and progressive files.
pub(crate) fn write_ftyp(w: &mut BoxWriter) {
    let b = w.open(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"isom", b"mp41", b"avc1", b"cmfc"] {
        w.bytes(brand);
    }
    w.close(b);
}

/// The init segment of a fragmented file: `ftyp`, then a `moov` with one `trak` per entry (at
/// most one video and one audio) and `mvex` saying that the samples are in fragments.
pub fn init_segment(tracks: &[&SampleEntry]) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(1024);
    write_ftyp(&mut w);
    let moov = w.open(b"moov");
    write_mvhd(&mut w, 0, AUDIO_TRACK + 1);
    for t in tracks {
        write_trak(&mut w, &[t], 0, 0, |w| {
            for kind in [b"stts", b"stsc", b"stco"] {
                let b = w.open_full(kind, 0, 0);
                w.u32(0);
                w.close(b);
            }
            let b = w.open_full(b"stsz", 0, 0);
            w.u32(0);
            w.u32(0);
            w.close(b);
        });
    }
    let mvex = w.open(b"mvex");
    for t in tracks {
        let trex = w.open_full(b"trex", 0, 0);
        w.u32(t.track_id());
        w.u32(1); // default_sample_description_index
        w.u32(0); // duration, size, flags: given per fragment
        w.u32(0);
        w.u32(0);
        w.close(trex);
    }
    w.close(mvex);
    w.close(moov);
    w.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_sizes_use_as_many_7_bit_groups_as_needed() {
        assert_eq!(descriptor(5, &[1, 2]), vec![5, 2, 1, 2]);
        let long = descriptor(4, &[0; 200]);
        assert_eq!(&long[..3], &[4, 0x81, 0x48]);
        assert_eq!(long.len(), 203);
    }

    #[test]
    fn codec_strings() {
        let avc = SampleEntry::Avc {
            avcc: vec![1, 0x64, 0x00, 0x1f, 0xff],
            width: 1280,
            height: 720,
        };
        assert_eq!(avc.codec_string(), "avc1.64001f");
        let aac = SampleEntry::aac(&[0x11, 0x90]).unwrap();
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        assert_eq!(aac.timescale(), 48000);
    }
}
