//! A check of an MP4 file's box tree before the `mp4` crate (0.14) parses it, and the sample
//! tables of its tracks, parsed and validated by us.
//!
//! `mp4` trusts box headers: a zero-size child makes its container loops spin forever, sizes
//! below the header underflow, and several boxes allocate what a header declares before
//! reading. Its sample accessors (`read_sample`, `Mp4Track::duration`) divide by table values
//! and unwrap lookups. So [`check`] walks every box `mp4` will read, the way `mp4` reads it,
//! and rejects a file unless:
//!
//! - every box lies inside its parent, has a size of at least its header, and the children
//!   of every container `mp4` walks tile it exactly (no trailing bytes, which `mp4` would read
//!   as a header running into the next box);
//! - a zero-size box ("to the end of the file") is a top-level `mdat`, and a 64-bit size is
//!   used only at the top level;
//! - the boxes `mp4` reads a header or field out of (`meta`, `stsd`, sample entries, `edts`,
//!   `dref`, `data`, `emsg`) hold what `mp4` reads, so none of its `size - n` underflow;
//! - there is one `moov`, no `moof` (fragmented files are not supported), track ids are
//!   unique and each `trak`/`mdia`/`minf`/`stbl` has at most one of each box we rely on;
//! - every track's sample tables are consistent: entry counts fit their boxes, `mdhd`
//!   timescale > 0, `stsc` `first_chunk` ≥ 1 and strictly increasing with
//!   `samples_per_chunk` ≥ 1 and every chunk in `stco`/`co64`, `stts` giving a time to every
//!   sample, `stss` sorted, chunk offsets and every sample size inside the file, the sizes
//!   together no more than the file, at most [`MAX_SAMPLES`] samples (and no more than the
//!   file has bytes).
//!
//! The walk follows `mp4`'s grammar (file → moov → trak → mdia → minf → stbl → stsd → avc1 →
//! avcC is the deepest path, 9 levels), so its depth is bounded without a counter, and its
//! work is linear in the file size. Nothing here calls into `mp4`.
//!
//! After the check, [`TrackTables::samples`] yields each sample's place and time in one pass,
//! so the file source never needs `mp4`'s per-sample lookups (which are also linear in the
//! table sizes per sample, so quadratic over a file).

use std::ops::Range;

/// At most this many samples in a file, all tracks together: a million is ~3.6 hours of
/// 30 fps video with 48 kHz AAC, plenty for a looped file. The file source keeps 32 bytes per
/// sample, so a file can make it hold at most 32 MB of timeline.
pub const MAX_SAMPLES: u64 = 1_000_000;

/// Why an MP4 file was refused: where (box path and byte offset) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} at byte {offset}: {what}")]
pub struct MalformedMp4 {
    /// Box types from the top, e.g. `moov/trak/mdia/minf/stbl/stsz`.
    pub path: String,
    /// Where the offending box starts in the file.
    pub offset: u64,
    pub what: String,
}

/// Sample sizes from `stsz`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sizes {
    Fixed { size: u32, count: u32 },
    Each(Vec<u32>),
}

impl Sizes {
    fn count(&self) -> u64 {
        match self {
            Sizes::Fixed { count, .. } => u64::from(*count),
            Sizes::Each(v) => v.len() as u64,
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Sizes::Fixed { size, .. } => *size,
            Sizes::Each(v) => v[i],
        }
    }
}

/// One track's sample tables, validated by [`check`].
#[derive(Debug, Clone)]
pub struct TrackTables {
    pub track_id: u32,
    /// `mdhd` timescale, > 0.
    pub timescale: u32,
    /// `mdhd` duration, in `timescale` units.
    pub duration: u64,
    /// `stts` (sample_count, sample_delta).
    stts: Vec<(u32, u32)>,
    /// `ctts` (sample_count, sample_offset).
    ctts: Vec<(u32, i32)>,
    /// `stss` sample numbers, strictly increasing; `None`: every sample is a sync sample.
    stss: Option<Vec<u32>>,
    /// `stsc` (first_chunk, samples_per_chunk).
    stsc: Vec<(u32, u32)>,
    sizes: Sizes,
    /// `stco` or `co64`.
    chunks: Vec<u64>,
    file_len: u64,
}

/// One sample as `mp4`'s `read_sample` would describe it, without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Byte range in the file, inside it.
    pub offset: u64,
    pub size: u32,
    /// Decode time in timescale units, and duration.
    pub start_time: u64,
    pub duration: u32,
    /// `ctts` offset (0 without `ctts` or past its end, as in `mp4`).
    pub rendering_offset: i32,
    pub is_sync: bool,
}

impl TrackTables {
    pub fn sample_count(&self) -> u64 {
        self.sizes.count()
    }

    /// Sum of the sample sizes, as `mp4`'s `total_sample_size`.
    pub fn total_sample_size(&self) -> u64 {
        match &self.sizes {
            Sizes::Fixed { size, count } => u64::from(*size) * u64::from(*count),
            Sizes::Each(v) => v.iter().map(|&s| u64::from(s)).sum(),
        }
    }

    /// Every sample in decode order. [`check`] made sure each lies in the file, is mapped to a
    /// chunk and has a time, so this does no lookups that can fail.
    pub fn samples(&self) -> impl Iterator<Item = SampleInfo> + '_ {
        let mut stts = self.stts.iter().flat_map(|&(n, d)| (0..n).map(move |_| d));
        let mut ctts = self.ctts.iter().flat_map(|&(n, o)| (0..n).map(move |_| o));
        let mut stss = self.stss.as_ref().map(|s| s.iter().peekable());
        let mut time = 0u64;
        // The chunk being read: its number (1-based), stsc entry, samples left, next offset.
        let (mut chunk, mut entry, mut left, mut pos) = (0u32, 0usize, 0u32, 0u64);
        (0..self.sizes.count() as usize).map(move |i| {
            if left == 0 {
                chunk = if i == 0 { self.stsc[0].0 } else { chunk + 1 };
                if self.stsc.get(entry + 1).is_some_and(|e| e.0 == chunk) {
                    entry += 1;
                }
                left = self.stsc[entry].1;
                pos = self.chunks[chunk as usize - 1];
            }
            left -= 1;
            let size = self.sizes.get(i);
            let offset = pos;
            pos += u64::from(size);
            let duration = stts.next().unwrap_or(0);
            let start_time = time;
            time += u64::from(duration);
            let id = i as u32 + 1;
            let is_sync = match &mut stss {
                None => true,
                Some(s) => {
                    while s.next_if(|&&n| n < id).is_some() {}
                    s.peek() == Some(&&id)
                }
            };
            SampleInfo {
                offset,
                size,
                start_time,
                duration,
                rendering_offset: ctts.next().unwrap_or(0),
                is_sync,
            }
        })
    }

    /// The sample-table checks of the module docs.
    fn validate(&self, e: &dyn Fn(String) -> MalformedMp4) -> Result<(), MalformedMp4> {
        let n = self.sample_count();
        if self.timescale == 0 {
            return Err(e("mdhd timescale is 0".into()));
        }
        if n > MAX_SAMPLES || n > self.file_len {
            return Err(e(format!(
                "stsz declares {n} samples: more than {MAX_SAMPLES} or than the file has bytes"
            )));
        }
        let total = self.total_sample_size();
        if total > self.file_len {
            return Err(e(format!(
                "stsz sizes add up to {total} bytes, more than the file's {}",
                self.file_len
            )));
        }
        if let Some(&o) = self.chunks.iter().find(|&&o| o > self.file_len) {
            return Err(e(format!("chunk offset {o} is past the end of the file")));
        }
        if let Some(s) = &self.stss {
            if s.windows(2).any(|w| w[0] >= w[1]) {
                return Err(e("stss sample numbers are not increasing".into()));
            }
        }
        let timed: u64 = self.stts.iter().map(|&(c, _)| u64::from(c)).sum();
        if timed < n {
            return Err(e(format!("stts gives times to {timed} of {n} samples")));
        }
        let end: u128 = self
            .stts
            .iter()
            .map(|&(c, d)| u128::from(c) * u128::from(d))
            .sum();
        if end > u128::from(u64::MAX) {
            return Err(e("stts durations overflow 64 bits".into()));
        }
        if n == 0 {
            return Ok(());
        }
        // stsc: runs of chunks, each chunk with samples_per_chunk samples, up to the last chunk.
        let chunks = self.chunks.len() as u64;
        let Some(&(first, _)) = self.stsc.first() else {
            return Err(e(format!("stsc is empty but there are {n} samples")));
        };
        let mut mapped = 0u128;
        for (i, &(fc, spc)) in self.stsc.iter().enumerate() {
            if fc == 0 || spc == 0 {
                return Err(e(format!(
                    "stsc entry {i}: first_chunk {fc}, samples_per_chunk {spc} (both must be ≥ 1)"
                )));
            }
            if u64::from(fc) > chunks {
                return Err(e(format!(
                    "stsc entry {i} starts at chunk {fc}, but stco/co64 has {chunks} chunks"
                )));
            }
            let next = match self.stsc.get(i + 1) {
                Some(&(next, _)) if next <= fc => {
                    return Err(e(format!(
                        "stsc first_chunk {next} after {fc}: not increasing"
                    )))
                }
                Some(&(next, _)) => u64::from(next),
                None => chunks + 1,
            };
            mapped += u128::from(next - u64::from(fc)) * u128::from(spc);
        }
        if mapped < u128::from(n) {
            return Err(e(format!(
                "stsc and stco/co64 place {mapped} samples (from chunk {first}), stsz has {n}"
            )));
        }
        // Every sample inside the file.
        for (i, s) in self.samples().enumerate() {
            if s.offset + u64::from(s.size) > self.file_len {
                return Err(e(format!(
                    "sample {} (bytes {}..{}) is past the end of the file ({} bytes)",
                    i + 1,
                    s.offset,
                    s.offset + u64::from(s.size),
                    self.file_len
                )));
            }
        }
        Ok(())
    }
}

/// A box: its type, where its header starts, and its body.
#[derive(Debug, Clone)]
struct Bx {
    typ: [u8; 4],
    start: usize,
    body: Range<usize>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn name(typ: &[u8; 4]) -> String {
    typ.escape_ascii().to_string()
}

/// The walk's state: the file, the path to the box being looked at, what was found.
struct Walk<'a> {
    file: &'a [u8],
    path: Vec<[u8; 4]>,
    tracks: Vec<TrackTables>,
}

/// Checks `file` as described in the module docs; on success, the sample tables of every
/// track (unique track ids, in file order).
pub fn check(file: &[u8]) -> Result<Vec<TrackTables>, MalformedMp4> {
    let mut w = Walk {
        file,
        path: Vec::new(),
        tracks: Vec::new(),
    };
    let mut moov = false;
    let refuse = |b: &Bx, what: &str| MalformedMp4 {
        path: name(&b.typ),
        offset: b.start as u64,
        what: what.into(),
    };
    for b in w.children(0..file.len(), true)? {
        match &b.typ {
            b"moov" if moov => return Err(refuse(&b, "a second moov")),
            b"moov" => {
                moov = true;
                w.nest(&b, Walk::moov)?;
            }
            b"moof" => return Err(refuse(&b, "fragmented MP4 (moof) is not supported")),
            b"emsg" => w.nest(&b, Walk::emsg)?,
            _ => {}
        }
    }
    let total: u64 = w.tracks.iter().map(TrackTables::sample_count).sum();
    if total > MAX_SAMPLES {
        return Err(MalformedMp4 {
            path: "moov".into(),
            offset: 0,
            what: format!("{total} samples in all tracks, more than {MAX_SAMPLES}"),
        });
    }
    Ok(w.tracks)
}

impl Walk<'_> {
    /// An error about `b`, the box at the end of the path.
    fn err(&self, b: &Bx, what: String) -> MalformedMp4 {
        let path: Vec<String> = self.path.iter().map(name).collect();
        MalformedMp4 {
            path: path.join("/"),
            offset: b.start as u64,
            what,
        }
    }

    /// Runs `f` on `b` with `b` on the path.
    fn nest<T>(
        &mut self,
        b: &Bx,
        f: impl FnOnce(&mut Self, &Bx) -> Result<T, MalformedMp4>,
    ) -> Result<T, MalformedMp4> {
        self.path.push(b.typ);
        let r = f(self, b);
        self.path.pop();
        r
    }

    /// The boxes that tile `range` of the file exactly (at the top level, a zero-size `mdat`
    /// takes the rest).
    fn children(&self, range: Range<usize>, top: bool) -> Result<Vec<Bx>, MalformedMp4> {
        let mut out = Vec::new();
        let mut pos = range.start;
        while pos < range.end {
            let b = self.child_at(pos, range.end, top)?;
            pos = b.body.end;
            out.push(b);
        }
        Ok(out)
    }

    /// The box whose header is at `pos`, which must end by `end`.
    fn child_at(&self, pos: usize, end: usize, top: bool) -> Result<Bx, MalformedMp4> {
        let here = |what: String| {
            let mut path: Vec<String> = self.path.iter().map(name).collect();
            if path.is_empty() {
                path.push("(file)".into());
            }
            MalformedMp4 {
                path: path.join("/"),
                offset: pos as u64,
                what,
            }
        };
        let f = self.file;
        if end - pos < 8 {
            return Err(here(format!("{} trailing bytes, not a box", end - pos)));
        }
        let size = u32_at(f, pos).unwrap_or(0);
        let typ: [u8; 4] = f[pos + 4..pos + 8].try_into().unwrap_or_default();
        let (hdr, size) = match size {
            0 if top && &typ == b"mdat" => (8, (end - pos) as u64),
            0 => {
                return Err(here(format!(
                    "{} box of size 0 (only a last top-level mdat may have one)",
                    name(&typ)
                )))
            }
            1 if top => match u64_at(f, pos + 8) {
                Some(s) if s >= 16 => (16, s),
                _ => return Err(here(format!("{}: bad 64-bit size", name(&typ)))),
            },
            1 => {
                return Err(here(format!(
                    "{}: 64-bit box size below the top level",
                    name(&typ)
                )))
            }
            s if s < 8 => {
                return Err(here(format!(
                    "{} box of size {s}, smaller than its header",
                    name(&typ)
                )))
            }
            s => (8, u64::from(s)),
        };
        if size > (end - pos) as u64 {
            return Err(here(format!(
                "{} box of {size} bytes runs past its parent ({} bytes left)",
                name(&typ),
                end - pos
            )));
        }
        let box_end = pos + size as usize;
        Ok(Bx {
            typ,
            start: pos,
            body: pos + hdr..box_end,
        })
    }

    /// The body of `b`, which must be at least `min` bytes.
    fn body(&self, b: &Bx, min: usize) -> Result<&[u8], MalformedMp4> {
        let body = &self.file[b.body.clone()];
        if body.len() < min {
            return Err(self.err(b, format!("{} bytes, needs at least {min}", body.len())));
        }
        Ok(body)
    }

    /// Children of `b`'s body from `skip` bytes in.
    fn kids(&self, b: &Bx, skip: usize) -> Result<Vec<Bx>, MalformedMp4> {
        self.body(b, skip)?;
        self.children(b.body.start + skip..b.body.end, false)
    }

    /// The one child `mp4` reads at `skip` bytes into `b`'s body, without looping.
    fn only_child(&self, b: &Bx, skip: usize) -> Result<Bx, MalformedMp4> {
        self.body(b, skip + 8)?;
        self.child_at(b.body.start + skip, b.body.end, false)
    }

    fn no_duplicates(
        &self,
        parent: &Bx,
        kids: &[Bx],
        types: &[&[u8; 4]],
    ) -> Result<(), MalformedMp4> {
        for t in types {
            if kids.iter().filter(|k| &&k.typ == t).count() > 1 {
                return Err(self.err(parent, format!("more than one {}", name(t))));
            }
        }
        Ok(())
    }

    fn moov(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        for k in self.kids(b, 0)? {
            match &k.typ {
                b"trak" => self.nest(&k, Walk::trak)?,
                b"meta" => self.nest(&k, Walk::meta)?,
                b"udta" => self.nest(&k, Walk::udta)?,
                b"mvex" => {
                    self.nest(&k, |w, k| w.kids(k, 0))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn udta(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        for k in self.kids(b, 0)? {
            if &k.typ == b"meta" {
                self.nest(&k, Walk::meta)?;
            }
        }
        Ok(())
    }

    /// `meta`: version/flags 0 then boxes, or (QuickTime) boxes at once if the first is `hdlr`.
    /// With a handler other than `mdir`, `mp4` copies every other child whole.
    fn meta(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        let body = self.body(b, 8)?;
        let skip = if u32_at(body, 0) == Some(0) {
            4
        } else if &body[4..8] == b"hdlr" {
            0
        } else {
            return Err(self.err(b, "version/flags not 0".into()));
        };
        let kids = self.kids(b, skip)?;
        self.no_duplicates(b, &kids, &[b"hdlr"])?;
        let Some(hdlr) = kids.iter().find(|k| &k.typ == b"hdlr") else {
            return Err(self.err(b, "no hdlr".into()));
        };
        // version/flags, pre_defined, handler_type, 12 reserved, a name (at least its NUL).
        let handler = self.nest(hdlr, |w, h| {
            w.body(h, 25).map(|h| [h[8], h[9], h[10], h[11]])
        })?;
        if &handler == b"mdir" {
            for k in &kids {
                if &k.typ == b"ilst" {
                    self.nest(k, Walk::ilst)?;
                }
            }
        }
        Ok(())
    }

    fn ilst(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        for item in self.kids(b, 0)? {
            // The items `mp4` reads: ©nam, ©day, covr, desc.
            if [b"\xa9nam", b"\xa9day", b"covr", b"desc"].contains(&&item.typ) {
                self.nest(&item, |w, item| {
                    for d in w.kids(item, 0)? {
                        if &d.typ == b"data" {
                            // type and locale, then the value.
                            w.nest(&d, |w, d| w.body(d, 8).map(drop))?;
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// `emsg` (top level): `mp4` takes the message length as the box size minus the fields
    /// and two NUL-terminated strings it read, which must all be inside the box.
    fn emsg(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        let body = self.body(b, 4)?;
        // Version 0: the strings, then 16 bytes of fields; 1: 20 bytes of fields, the strings.
        let (strings_at, fields) = match body[0] {
            0 => (4, 16),
            1 => (24, 20),
            v => return Err(self.err(b, format!("version {v}"))),
        };
        let mut at = strings_at;
        for _ in 0..2 {
            let Some(nul) = body.get(at..).and_then(|s| s.iter().position(|&c| c == 0)) else {
                return Err(self.err(b, "a string runs past the box".into()));
            };
            at += nul + 1;
        }
        if body.len() < 4 + fields + (at - strings_at) {
            return Err(self.err(b, "shorter than its fields".into()));
        }
        Ok(())
    }

    fn trak(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        let kids = self.kids(b, 0)?;
        self.no_duplicates(b, &kids, &[b"tkhd", b"mdia", b"edts", b"meta"])?;
        let mut id = None;
        let mut tables = None;
        for k in &kids {
            match &k.typ {
                b"tkhd" => {
                    id = Some(self.nest(k, |w, k| {
                        let body = w.body(k, 24)?;
                        match body[0] {
                            0 => Ok(u32_at(body, 12).unwrap_or(0)),
                            1 => Ok(u32_at(body, 20).unwrap_or(0)),
                            v => Err(w.err(k, format!("version {v}"))),
                        }
                    })?);
                }
                b"edts" => {
                    self.nest(k, |w, k| w.only_child(k, 0))?;
                }
                b"meta" => self.nest(k, Walk::meta)?,
                b"mdia" => tables = Some(self.nest(k, Walk::mdia)?),
                _ => {}
            }
        }
        let (Some(id), Some(mut tables)) = (id, tables) else {
            return Err(self.err(b, "no tkhd or no mdia".into()));
        };
        if id == 0 || self.tracks.iter().any(|t| t.track_id == id) {
            return Err(self.err(b, format!("track id {id} is 0 or not unique")));
        }
        tables.track_id = id;
        tables.validate(&|what| self.err(b, what))?;
        self.tracks.push(tables);
        Ok(())
    }

    fn mdia(&mut self, b: &Bx) -> Result<TrackTables, MalformedMp4> {
        let kids = self.kids(b, 0)?;
        self.no_duplicates(b, &kids, &[b"mdhd", b"hdlr", b"minf"])?;
        let mut mdhd = None;
        let mut tables = None;
        for k in &kids {
            match &k.typ {
                b"mdhd" => {
                    mdhd = Some(self.nest(k, |w, k| {
                        let body = w.body(k, 20)?;
                        match body[0] {
                            0 => Ok((
                                u32_at(body, 12).unwrap_or(0),
                                u64::from(u32_at(body, 16).unwrap_or(0)),
                            )),
                            1 => {
                                let body = w.body(k, 32)?;
                                Ok((u32_at(body, 20).unwrap_or(0), u64_at(body, 24).unwrap_or(0)))
                            }
                            v => Err(w.err(k, format!("version {v}"))),
                        }
                    })?);
                }
                // version/flags, pre_defined, handler_type, 12 reserved, a name (at least its NUL).
                b"hdlr" => {
                    self.nest(k, |w, k| w.body(k, 25).map(drop))?;
                }
                b"minf" => tables = Some(self.nest(k, Walk::minf)?),
                _ => {}
            }
        }
        let (Some((timescale, duration)), Some(mut tables)) = (mdhd, tables) else {
            return Err(self.err(b, "no mdhd, hdlr or minf".into()));
        };
        tables.timescale = timescale;
        tables.duration = duration;
        Ok(tables)
    }

    fn minf(&mut self, b: &Bx) -> Result<TrackTables, MalformedMp4> {
        let kids = self.kids(b, 0)?;
        self.no_duplicates(b, &kids, &[b"stbl", b"dinf"])?;
        let mut tables = None;
        for k in &kids {
            match &k.typ {
                b"dinf" => self.nest(k, |w, k| {
                    for d in w.kids(k, 0)? {
                        if &d.typ == b"dref" {
                            // version/flags, entry_count, then entries.
                            w.nest(&d, |w, d| w.kids(d, 8))?;
                        }
                    }
                    Ok(())
                })?,
                b"stbl" => tables = Some(self.nest(k, Walk::stbl)?),
                _ => {}
            }
        }
        tables.ok_or_else(|| self.err(b, "no stbl".into()))
    }

    fn stbl(&mut self, b: &Bx) -> Result<TrackTables, MalformedMp4> {
        const TABLES: [&[u8; 4]; 8] = [
            b"stsd", b"stts", b"ctts", b"stss", b"stsc", b"stsz", b"stco", b"co64",
        ];
        let kids = self.kids(b, 0)?;
        self.no_duplicates(b, &kids, &TABLES)?;
        let find = |t: &[u8; 4]| kids.iter().find(|k| &k.typ == t);
        for t in [b"stsd", b"stts", b"stsc", b"stsz"] {
            if find(t).is_none() {
                return Err(self.err(b, format!("no {}", name(t))));
            }
        }
        let chunk_box = match (find(b"stco"), find(b"co64")) {
            (Some(_), Some(_)) => return Err(self.err(b, "both stco and co64".into())),
            (None, None) => return Err(self.err(b, "no stco or co64".into())),
            (Some(k), None) | (None, Some(k)) => k,
        };
        for k in &kids {
            if &k.typ == b"stsd" {
                self.nest(k, Walk::stsd)?;
            }
        }
        let file_len = self.file.len() as u64;
        let stts = self.table(find(b"stts").unwrap(), 8, |e| {
            (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0))
        })?;
        let ctts = match find(b"ctts") {
            Some(k) => self.table(k, 8, |e| {
                (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0) as i32)
            })?,
            None => Vec::new(),
        };
        let stss = match find(b"stss") {
            Some(k) => Some(self.table(k, 4, |e| u32_at(e, 0).unwrap_or(0))?),
            None => None,
        };
        let stsc = self.table(find(b"stsc").unwrap(), 12, |e| {
            (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0))
        })?;
        let chunks = if &chunk_box.typ == b"stco" {
            self.table(chunk_box, 4, |e| u64::from(u32_at(e, 0).unwrap_or(0)))?
        } else {
            self.table(chunk_box, 8, |e| u64_at(e, 0).unwrap_or(0))?
        };
        let stsz = find(b"stsz").unwrap();
        let sizes = self.nest(stsz, |w, k| {
            // version/flags, sample_size, sample_count, then sizes if sample_size is 0.
            let body = w.body(k, 12)?;
            let size = u32_at(body, 4).unwrap_or(0);
            let count = u32_at(body, 8).unwrap_or(0);
            if size != 0 {
                return Ok(Sizes::Fixed { size, count });
            }
            let entries = body[12..].chunks_exact(4);
            if (count as usize) > entries.len() {
                return Err(w.err(k, format!("{count} sizes do not fit in the box")));
            }
            Ok(Sizes::Each(
                entries
                    .take(count as usize)
                    .map(|e| u32_at(e, 0).unwrap_or(0))
                    .collect(),
            ))
        })?;
        let tables = TrackTables {
            track_id: 0,
            timescale: 0,
            duration: 0,
            stts,
            ctts,
            stss,
            stsc,
            sizes,
            chunks,
            file_len,
        };
        Ok(tables)
    }

    /// A full box of `entry_count` entries of `size` bytes, which must fit in it.
    fn table<T>(
        &mut self,
        b: &Bx,
        size: usize,
        entry: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<T>, MalformedMp4> {
        self.nest(b, |w, b| {
            let body = w.body(b, 8)?;
            let n = u32_at(body, 4).unwrap_or(0) as usize;
            let entries = body[8..].chunks_exact(size);
            if n > entries.len() {
                return Err(w.err(b, format!("{n} entries do not fit in the box")));
            }
            Ok(entries.take(n).map(entry).collect())
        })
    }

    /// `stsd`: version/flags, entry_count, then the one sample entry `mp4` reads, whose
    /// fields and child box (`avcC`, `hvcC`, `vpcC`, `esds`) must be inside it.
    fn stsd(&mut self, b: &Bx) -> Result<(), MalformedMp4> {
        let entry = self.only_child(b, 8)?;
        self.nest(&entry, |w, e| {
            match &e.typ {
                // 78 bytes of sample entry fields, then avcC/hvcC/vpcC.
                b"avc1" | b"hev1" | b"vp09" => {
                    w.only_child(e, 78)?;
                }
                // 28 bytes of fields, then esds if there is more.
                b"mp4a" if e.body.len() > 28 => {
                    w.only_child(e, 28)?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
