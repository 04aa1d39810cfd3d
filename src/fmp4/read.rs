//! Reading back what [`super`] writes: box headers, the sample entries of a `moov`, and the
//! runs of a `moof`. Used to recover a segment cut by a crash and to index recordings for
//! playback.
//!
//! Files on disk are not trusted more than a peer: every size is checked against the bytes at
//! hand before it is used, a truncated box is "need more" ([`box_header`] gives `Ok(None)`),
//! never a panic, and nothing is allocated in proportion to a count the file merely claims.

use super::fragment::SampleInfo;
use super::init::SampleEntry;

/// A box that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ReadError {
    pub what: &'static str,
    pub detail: String,
}

fn bad(what: &'static str, detail: impl Into<String>) -> ReadError {
    ReadError {
        what,
        detail: detail.into(),
    }
}

/// Most samples one `trun` may claim: a fragment is a few seconds at most.
const MAX_RUN_SAMPLES: u32 = 1 << 20;

/// A box header: its type, the header's length and the whole box's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    pub header_len: u64,
    /// The whole box, header included.
    pub size: u64,
}

/// Parses the box header at the start of `buf`: `Ok(None)` if `buf` is too short to tell.
/// A size of 0 ("to the end of the file") is refused: nothing here writes one, and a reader
/// that accepted it could not tell a cut file from a whole one.
pub fn box_header(buf: &[u8]) -> Result<Option<BoxHeader>, ReadError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = [buf[4], buf[5], buf[6], buf[7]];
    let (header_len, size) = match size32 {
        0 => return Err(bad("box", "size 0 (to end of file) is not used here")),
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let size = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
            (16, size)
        }
        n => (8, u64::from(n)),
    };
    if size < header_len {
        return Err(bad("box", format!("size {size} smaller than its header")));
    }
    Ok(Some(BoxHeader {
        kind,
        header_len,
        size,
    }))
}

/// The child boxes of a container's body, as (type, body).
fn children(mut body: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), ReadError>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        let h = match box_header(body) {
            Ok(Some(h)) => h,
            Ok(None) => return Some(Err(bad("box", "truncated header inside a container"))),
            Err(e) => return Some(Err(e)),
        };
        if h.size > body.len() as u64 {
            return Some(Err(bad(
                "box",
                format!(
                    "{} of {} bytes overruns its container ({} left)",
                    String::from_utf8_lossy(&h.kind),
                    h.size,
                    body.len()
                ),
            )));
        }
        let (this, rest) = body.split_at(h.size as usize);
        body = rest;
        Some(Ok((h.kind, &this[h.header_len as usize..])))
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, ReadError> {
    for c in children(body) {
        let (k, b) = c?;
        if &k == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// A cursor over a box body.
struct Fields<'a> {
    what: &'static str,
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if self.buf.len() < n {
            return Err(bad(self.what, "truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ReadError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ReadError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or_default()))
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), ReadError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

/// One track's samples in a fragment, as its `traf` describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFragment {
    pub track_id: u32,
    /// Decode time of the first sample (`tfdt`), in the track's timescale.
    pub base_decode_time: u64,
    /// Where the first sample's bytes start, from the start of the `moof`.
    pub data_offset: u64,
    pub samples: Vec<SampleInfo>,
}

/// Parses a `moof` box (given whole, header included) into its track runs, with one run per
/// `traf` (runs of a `traf` with several `trun`s are joined when contiguous; a gap between
/// them is an error: nothing here writes one).
pub fn parse_moof(moof: &[u8]) -> Result<Vec<TrackFragment>, ReadError> {
    let h = box_header(moof)?.ok_or_else(|| bad("moof", "truncated header"))?;
    if &h.kind != b"moof" || h.size != moof.len() as u64 {
        return Err(bad("moof", "not a whole moof box"));
    }
    let mut out = Vec::new();
    for c in children(&moof[h.header_len as usize..]) {
        let (kind, body) = c?;
        if &kind == b"traf" {
            out.push(parse_traf(body)?);
        }
    }
    Ok(out)
}

fn parse_traf(body: &[u8]) -> Result<TrackFragment, ReadError> {
    let tfhd = child(body, b"tfhd")?.ok_or_else(|| bad("traf", "no tfhd"))?;
    let mut f = Fields {
        what: "tfhd",
        buf: tfhd,
    };
    let (_, flags) = f.full()?;
    let track_id = f.u32()?;
    if flags & 0x01 != 0 {
        // An explicit base offset would make data offsets relative to the file: not ours.
        return Err(bad("tfhd", "base-data-offset is not supported"));
    }
    if flags & 0x02 != 0 {
        f.u32()?; // sample description index
    }
    let default_duration = if flags & 0x08 != 0 { f.u32()? } else { 0 };
    let default_size = if flags & 0x10 != 0 { f.u32()? } else { 0 };
    let default_flags = if flags & 0x20 != 0 { f.u32()? } else { 0 };
    let base_decode_time = match child(body, b"tfdt")? {
        None => return Err(bad("traf", "no tfdt")),
        Some(b) => {
            let mut f = Fields {
                what: "tfdt",
                buf: b,
            };
            match f.full()?.0 {
                1 => f.u64()?,
                _ => u64::from(f.u32()?),
            }
        }
    };
    let mut samples = Vec::new();
    let mut data_offset: Option<u64> = None;
    let mut next_offset = 0u64;
    for c in children(body) {
        let (kind, b) = c?;
        if &kind != b"trun" {
            continue;
        }
        let mut f = Fields {
            what: "trun",
            buf: b,
        };
        let (_, flags) = f.full()?;
        let count = f.u32()?;
        let offset = if flags & 0x01 != 0 {
            let o = f.u32()? as i32;
            u64::try_from(o).map_err(|_| bad("trun", "negative data offset"))?
        } else {
            next_offset
        };
        let first_flags = if flags & 0x04 != 0 {
            Some(f.u32()?)
        } else {
            None
        };
        let per_sample = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&bit| flags & bit != 0)
            .count()
            * 4;
        if count > MAX_RUN_SAMPLES || (per_sample > 0 && f.buf.len() / per_sample < count as usize)
        {
            return Err(bad(
                "trun",
                format!("{count} samples do not fit its {} bytes", f.buf.len()),
            ));
        }
        match data_offset {
            None => data_offset = Some(offset),
            Some(_) if offset == next_offset => {}
            Some(_) => return Err(bad("traf", "runs are not contiguous")),
        }
        samples.reserve(count as usize);
        let mut bytes = 0u64;
        for i in 0..count {
            let duration = if flags & 0x100 != 0 {
                f.u32()?
            } else {
                default_duration
            };
            let size = if flags & 0x200 != 0 {
                f.u32()?
            } else {
                default_size
            };
            let mut sflags = if flags & 0x400 != 0 {
                f.u32()?
            } else {
                default_flags
            };
            if i == 0 {
                if let Some(ff) = first_flags {
                    sflags = ff;
                }
            }
            let composition_offset = if flags & 0x800 != 0 {
                f.u32()? as i32
            } else {
                0
            };
            bytes += u64::from(size);
            samples.push(SampleInfo {
                duration,
                size,
                flags: sflags,
                composition_offset,
            });
        }
        next_offset = offset + bytes;
    }
    Ok(TrackFragment {
        track_id,
        base_decode_time,
        data_offset: data_offset.unwrap_or(0),
        samples,
    })
}

/// The sample entry of each track of a `moov` body (the box without its header), in track
/// order. Tracks with codecs other than H.264 and AAC are left out.
pub fn parse_moov(body: &[u8]) -> Result<Vec<SampleEntry>, ReadError> {
    let mut out = Vec::new();
    for c in children(body) {
        let (kind, trak) = c?;
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia")? else {
            continue;
        };
        let Some(minf) = child(mdia, b"minf")? else {
            continue;
        };
        let Some(stbl) = child(minf, b"stbl")? else {
            continue;
        };
        let Some(stsd) = child(stbl, b"stsd")? else {
            continue;
        };
        let mut f = Fields {
            what: "stsd",
            buf: stsd,
        };
        f.full()?;
        f.u32()?; // entry count: the first entry describes an init segment's track
        if let Some(e) = children(f.buf).next() {
            let (kind, entry) = e?;
            match &kind {
                b"avc1" | b"avc3" => {
                    // 78 bytes of visual sample entry fields, then boxes.
                    let boxes = entry.get(78..).ok_or_else(|| bad("avc1", "truncated"))?;
                    let avcc = child(boxes, b"avcC")?.ok_or_else(|| bad("avc1", "no avcC"))?;
                    out.push(SampleEntry::avc(avcc).map_err(|e| bad("avcC", e.to_string()))?);
                }
                b"mp4a" => {
                    let boxes = entry.get(28..).ok_or_else(|| bad("mp4a", "truncated"))?;
                    let esds = child(boxes, b"esds")?.ok_or_else(|| bad("mp4a", "no esds"))?;
                    let asc = audio_specific_config(esds.get(4..).unwrap_or_default())?;
                    out.push(SampleEntry::aac(asc).map_err(|e| bad("esds", e.to_string()))?);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The DecoderSpecificInfo (tag 5) inside an ES_Descriptor (tag 3).
fn audio_specific_config(mut buf: &[u8]) -> Result<&[u8], ReadError> {
    // ES_Descriptor -> DecoderConfigDescriptor -> DecoderSpecificInfo, each a tag and an
    // expandable size, with fixed fields in between.
    for (tag, skip) in [(0x03u8, 3usize), (0x04, 13), (0x05, 0)] {
        let mut f = Fields { what: "esds", buf };
        if f.u8()? != tag {
            return Err(bad("esds", format!("expected descriptor tag {tag}")));
        }
        let mut len = 0usize;
        for _ in 0..4 {
            let b = f.u8()?;
            len = (len << 7) | usize::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = f.take(len)?;
        if tag == 0x05 {
            return Ok(body);
        }
        let mut inner = Fields {
            what: "esds",
            buf: body,
        };
        if tag == 0x03 {
            inner.u16()?; // ES_ID
            let flags = inner.u8()?;
            if flags & 0x80 != 0 {
                inner.u16()?;
            }
            if flags & 0x40 != 0 {
                let n = inner.u8()?;
                inner.take(usize::from(n))?;
            }
            if flags & 0x20 != 0 {
                inner.u16()?;
            }
            buf = inner.buf;
        } else {
            buf = inner.take(skip).map(|_| inner.buf)?;
        }
    }
    Err(bad("esds", "no DecoderSpecificInfo"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::fragment::{fragment_header, sample_flags, Run};
    use crate::fmp4::init::{init_segment, SampleEntry, AUDIO_TRACK, VIDEO_TRACK};

    fn avc_entry() -> SampleEntry {
        // avcC of the 640x360 baseline fixture (profile 66, level 30).
        let sps = [
            0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
            0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
        ];
        let pps = [0x68, 0xcb, 0x8c, 0xb2];
        let avcc = crate::media::AvcDecoderConfig::from_parameter_sets(&sps, &pps)
            .unwrap()
            .to_bytes();
        SampleEntry::avc(&avcc).unwrap()
    }

    #[test]
    fn an_init_segment_reads_back_as_its_entries() {
        let video = avc_entry();
        let audio = SampleEntry::aac(&[0x11, 0x90]).unwrap();
        let init = init_segment(&[&video, &audio]);
        let ftyp = box_header(&init).unwrap().unwrap();
        assert_eq!(&ftyp.kind, b"ftyp");
        let moov_at = ftyp.size as usize;
        let moov = box_header(&init[moov_at..]).unwrap().unwrap();
        assert_eq!(&moov.kind, b"moov");
        assert_eq!(moov_at as u64 + moov.size, init.len() as u64);
        let entries = parse_moov(&init[moov_at + 8..]).unwrap();
        assert_eq!(entries, vec![video, audio]);
    }

    #[test]
    fn a_fragment_reads_back_as_its_runs() {
        let v = [
            SampleInfo {
                duration: 3600,
                size: 1000,
                flags: sample_flags::SYNC,
                composition_offset: 7200,
            },
            SampleInfo {
                duration: 3600,
                size: 300,
                flags: sample_flags::NON_SYNC | sample_flags::DISPOSABLE,
                composition_offset: -3600,
            },
        ];
        let a = [SampleInfo {
            duration: 1024,
            size: 20,
            flags: sample_flags::SYNC,
            composition_offset: 0,
        }];
        let header = fragment_header(
            7,
            &[
                Run {
                    track_id: VIDEO_TRACK,
                    base_decode_time: 90_000,
                    samples: &v,
                    video: true,
                },
                Run {
                    track_id: AUDIO_TRACK,
                    base_decode_time: 48_000,
                    samples: &a,
                    video: false,
                },
            ],
        );
        let moof = box_header(&header).unwrap().unwrap();
        let mdat = box_header(&header[moof.size as usize..]).unwrap().unwrap();
        assert_eq!(&mdat.kind, b"mdat");
        assert_eq!(mdat.size, 8 + 1320);
        assert_eq!(moof.size + 8, header.len() as u64);
        let runs = parse_moof(&header[..moof.size as usize]).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].samples, v);
        assert_eq!(runs[0].base_decode_time, 90_000);
        assert_eq!(runs[0].data_offset, header.len() as u64);
        assert_eq!(runs[1].samples, a);
        assert_eq!(runs[1].data_offset, header.len() as u64 + 1300);
        // Every truncation is an error or "need more", never a panic.
        for cut in 0..moof.size as usize {
            assert!(parse_moof(&header[..cut]).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = box_header(&data);
            let _ = parse_moof(&data);
            let _ = parse_moov(&data);
        }
    }
}
