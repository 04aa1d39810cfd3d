//! Real input for tests, benchmarks and examples (the codecs crate's and the server's): the
//! audio tags of an FLV file, and the Speex packets of the committed fixture. Not part of the
//! codec API; it reads files, which the codec modules never do.

/// One FLV audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvAudioTag {
    pub timestamp_ms: u32,
    /// The tag body's first byte: sound format, rate, size and type.
    pub header: u8,
    /// The codec's packet (the body after that byte).
    pub packet: Vec<u8>,
}

/// The audio tags of an FLV file, in order; stops at the first truncated tag.
pub fn flv_audio_tags(flv: &[u8]) -> Vec<FlvAudioTag> {
    let Some(offset) = flv.get(5..9) else {
        return Vec::new();
    };
    let mut at = u32::from_be_bytes(offset.try_into().expect("4 bytes")) as usize + 4;
    let mut tags = Vec::new();
    while let Some(h) = flv.get(at..at + 11) {
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let Some(body) = flv.get(at + 11..at + 11 + size) else {
            break;
        };
        if h[0] == 8 && !body.is_empty() {
            tags.push(FlvAudioTag {
                timestamp_ms,
                header: body[0],
                packet: body[1..].to_vec(),
            });
        }
        at += 11 + size + 4;
    }
    tags
}

/// The 500 Speex tags of `fixtures/h264-speex16k.flv` (ffmpeg libspeex, 16 kHz wideband,
/// 20 ms each, a 1 kHz tone).
pub fn speex_fixture() -> Vec<FlvAudioTag> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/h264-speex16k.flv");
    let flv = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tags = flv_audio_tags(&flv);
    assert!(tags.iter().all(|t| t.header >> 4 == 11), "all Speex");
    tags
}
