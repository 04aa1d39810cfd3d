//! Just enough FLV to check what rtmpdump wrote: tags with their type, timestamp and codec
//! bytes. A truncated last tag (rtmpdump was interrupted) is ignored.

/// One FLV tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// 8 audio, 9 video, 18 script data.
    pub kind: u8,
    pub timestamp_ms: u32,
    pub body: Vec<u8>,
}

impl Tag {
    /// Video: codec id (7 = AVC). Audio: sound format (10 = AAC, 11 = Speex).
    pub fn codec(&self) -> Option<u8> {
        let b = *self.body.first()?;
        match self.kind {
            9 => Some(b & 0x0F),
            8 => Some(b >> 4),
            _ => None,
        }
    }

    /// An AVC or AAC sequence header (decoder configuration), not a frame.
    pub fn is_sequence_header(&self) -> bool {
        match (self.kind, self.codec()) {
            (9, Some(7)) | (8, Some(10)) => self.body.get(1) == Some(&0),
            _ => false,
        }
    }

    /// A media frame (audio or video, not a sequence header).
    pub fn is_frame(&self) -> bool {
        matches!(self.kind, 8 | 9) && !self.is_sequence_header() && self.body.len() > 1
    }
}

/// Parses an FLV file: header, then tags. Panics if it is not FLV at all.
pub fn parse(bytes: &[u8]) -> Vec<Tag> {
    assert!(
        bytes.len() >= 13 && &bytes[..3] == b"FLV",
        "not an FLV file ({} bytes)",
        bytes.len()
    );
    let header_len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    let mut at = header_len + 4;
    let mut tags = Vec::new();
    while at + 11 <= bytes.len() {
        let h = &bytes[at..at + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let body_at = at + 11;
        if body_at + size + 4 > bytes.len() {
            break;
        }
        tags.push(Tag {
            kind: h[0] & 0x1F,
            timestamp_ms: ts,
            body: bytes[body_at..body_at + size].to_vec(),
        });
        at = body_at + size + 4;
    }
    tags
}

/// Frames of `kind` (8 audio, 9 video) per second of media time.
pub fn media_rate(tags: &[Tag], kind: u8) -> f64 {
    let ts: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == kind && t.is_frame())
        .map(|t| t.timestamp_ms)
        .collect();
    if ts.len() < 2 {
        return 0.0;
    }
    let lo = *ts.iter().min().unwrap();
    let hi = *ts.iter().max().unwrap();
    (ts.len() - 1) as f64 * 1000.0 / f64::from(hi - lo)
}
