//! A fragment's header: `moof` (one `traf` per track: `tfhd`, `tfdt`, `trun`) and the `mdat`
//! header. The sample bytes are not here: they follow the header in the order of the runs,
//! written by the caller straight from where they live (a stream's pages, a file).

use super::boxes::{mdat_header, BoxWriter};

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1), as `trun` carries them.
pub mod sample_flags {
    /// A sync sample: depends on no other (`sample_depends_on` = 2).
    pub const SYNC: u32 = 0x0200_0000;
    /// Depends on others (`sample_depends_on` = 1) and is not a sync sample.
    pub const NON_SYNC: u32 = 0x0101_0000;
    /// Added to `NON_SYNC` for a sample no other depends on (`sample_is_depended_on` = 2).
    pub const DISPOSABLE: u32 = 0x0080_0000;

    /// Whether flags mark a sync sample.
    pub fn is_sync(flags: u32) -> bool {
        flags & 0x0001_0000 == 0
    }
}

/// What a `trun` says about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// In the track's timescale.
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Presentation minus decode time, in the track's timescale.
    pub composition_offset: i32,
}

/// One track's samples in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub track_id: u32,
    /// The decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    pub samples: &'a [SampleInfo],
    /// Video runs carry per-sample flags and composition offsets; audio runs are all sync
    /// samples presented when decoded, which `tfhd` says once.
    pub video: bool,
}

impl Run<'_> {
    /// Sample bytes of the run.
    pub fn bytes(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }
}

const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TFHD_DEFAULT_SAMPLE_FLAGS: u32 = 0x00_0020;
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_DURATION: u32 = 0x00_0100;
const TRUN_SIZE: u32 = 0x00_0200;
const TRUN_FLAGS: u32 = 0x00_0400;
const TRUN_COMPOSITION: u32 = 0x00_0800;

/// The `moof` and `mdat` header of fragment number `sequence` (counting from 1) holding
/// `runs`, whose sample bytes must follow the header in the order of the runs and of their
/// samples. Data offsets are relative to the `moof` (`default-base-is-moof`), so the fragment
/// can be moved or served on its own.
pub fn fragment_header(sequence: u32, runs: &[Run<'_>]) -> Vec<u8> {
    let samples: usize = runs.iter().map(|r| r.samples.len()).sum();
    let mut w = BoxWriter::with_capacity(64 + runs.len() * 64 + samples * 16);
    let moof = w.open(b"moof");
    let mfhd = w.open_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.close(mfhd);
    let mut offset_fields = Vec::with_capacity(runs.len());
    for run in runs {
        let traf = w.open(b"traf");
        let mut tfhd_flags = TFHD_DEFAULT_BASE_IS_MOOF;
        if !run.video {
            tfhd_flags |= TFHD_DEFAULT_SAMPLE_FLAGS;
        }
        let tfhd = w.open_full(b"tfhd", 0, tfhd_flags);
        w.u32(run.track_id);
        if !run.video {
            w.u32(sample_flags::SYNC);
        }
        w.close(tfhd);
        let tfdt = w.open_full(b"tfdt", 1, 0);
        w.u64(run.base_decode_time);
        w.close(tfdt);
        let mut trun_flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE;
        if run.video {
            trun_flags |= TRUN_FLAGS | TRUN_COMPOSITION;
        }
        // Version 1: signed composition offsets (B-frames may start before their decode time).
        let trun = w.open_full(b"trun", 1, trun_flags);
        w.u32(run.samples.len() as u32);
        offset_fields.push(w.len());
        w.u32(0); // data_offset, patched below
        for s in run.samples {
            w.u32(s.duration);
            w.u32(s.size);
            if run.video {
                w.u32(s.flags);
                w.i32(s.composition_offset);
            }
        }
        w.close(trun);
        w.close(traf);
    }
    w.close(moof);
    let payload: u64 = runs.iter().map(Run::bytes).sum();
    let mdat = mdat_header(payload);
    let mut offset = (w.len() + mdat.len()) as u64;
    for (run, at) in runs.iter().zip(offset_fields) {
        // Offsets past 2 GiB cannot be said in a trun; a fragment is at most a few MiB (the
        // fragmenter cuts parts at a byte bound), so this holds.
        w.patch_u32(at, offset.min(i32::MAX as u64) as u32);
        offset += run.bytes();
    }
    let mut out = w.into_vec();
    out.extend_from_slice(&mdat);
    out
}
