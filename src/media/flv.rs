//! Builders for FLV tag bodies, written straight into a stream's pages: one reservation per
//! body, header and payload `put` as parts, no intermediate buffer.

use crate::pages::{Message, PagesError, StreamWriter};

/// Header byte of every AAC audio tag: sound format 10, "44 kHz", 16-bit, stereo (the FLV spec
/// fixes these bits for AAC; the real values are in the AudioSpecificConfig).
pub const AAC_TAG_HEADER: u8 = 0xaf;

fn avc_header(keyframe: bool, packet_type: u8, cts: i32) -> [u8; 5] {
    let frame_type: u8 = if keyframe { 1 } else { 2 };
    let cts = cts.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    [(frame_type << 4) | 7, packet_type, cts[1], cts[2], cts[3]]
}

fn write_parts(w: &mut StreamWriter, parts: &[&[u8]]) -> Result<Message, PagesError> {
    let mut fill = w.reserve(parts.iter().map(|p| p.len()).sum())?;
    for p in parts {
        fill.put(p)?;
    }
    Ok(fill.publish())
}

/// An AVC NALU tag body: `avcc_nalus` are 4-byte-length-prefixed NAL units; `cts` is pts − dts
/// in ms (clamped to 24 bits).
pub fn video_body(
    w: &mut StreamWriter,
    keyframe: bool,
    cts: i32,
    avcc_nalus: &[u8],
) -> Result<Message, PagesError> {
    write_parts(w, &[&avc_header(keyframe, 1, cts), avcc_nalus])
}

/// An AVC sequence header tag body around an AVCDecoderConfigurationRecord
/// (see [`AvcDecoderConfig::to_bytes`](super::AvcDecoderConfig::to_bytes)).
pub fn avc_sequence_header(
    w: &mut StreamWriter,
    avcc_record: &[u8],
) -> Result<Message, PagesError> {
    write_parts(w, &[&avc_header(true, 0, 0), avcc_record])
}

/// An AAC raw-frame tag body.
pub fn aac_body(w: &mut StreamWriter, raw: &[u8]) -> Result<Message, PagesError> {
    write_parts(w, &[&[AAC_TAG_HEADER, 1], raw])
}

/// An AAC sequence header tag body around an AudioSpecificConfig.
pub fn aac_sequence_header(w: &mut StreamWriter, asc: &[u8]) -> Result<Message, PagesError> {
    write_parts(w, &[&[AAC_TAG_HEADER, 0], asc])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{classify_message, AudioSpecificConfig, AvcDecoderConfig, Frame, MediaKind};
    use crate::pages::{PagePool, PoolConfig};

    #[test]
    fn built_bodies_classify_and_parse_back() {
        let pool = PagePool::new(PoolConfig::default());
        let mut w = pool.writer("t", 1 << 20);

        let v = video_body(&mut w, false, -80, &[0, 0, 0, 2, 0x41, 0x9a]).unwrap();
        assert_eq!(
            v.to_vec(),
            vec![0x27, 1, 0xff, 0xff, 0xb0, 0, 0, 0, 2, 0x41, 0x9a]
        );
        let info = classify_message(MediaKind::Video, &v).unwrap();
        assert_eq!(info.composition_time, -80);

        let rec = AvcDecoderConfig {
            profile_indication: 66,
            profile_compatibility: 0xc0,
            level_indication: 30,
            length_size: 4,
            sps: vec![vec![0x67, 1]],
            pps: vec![vec![0x68, 2]],
        };
        let s = avc_sequence_header(&mut w, &rec.to_bytes()).unwrap();
        let f = Frame::from_tag_body(MediaKind::Video, 0, s.clone()).unwrap();
        assert!(f.sequence_header && !f.keyframe);
        assert_eq!(AvcDecoderConfig::parse(&s.to_vec()[5..]).unwrap(), rec);

        let asc = AudioSpecificConfig {
            object_type: 2,
            sample_rate: 44100,
            channels: 2,
        };
        let a = aac_sequence_header(&mut w, &asc.to_bytes()).unwrap();
        assert!(
            classify_message(MediaKind::Audio, &a)
                .unwrap()
                .sequence_header
        );
        assert_eq!(AudioSpecificConfig::parse(&a.to_vec()[2..]).unwrap(), asc);
        let r = aac_body(&mut w, &[0x21, 0x10]).unwrap();
        assert_eq!(r.to_vec(), vec![0xaf, 1, 0x21, 0x10]);
    }

    #[test]
    fn budget_exhaustion_is_an_error() {
        let pool = PagePool::new(PoolConfig::default());
        let mut w = pool.writer("t", 8);
        assert!(aac_body(&mut w, &[0; 64]).is_err());
    }
}
