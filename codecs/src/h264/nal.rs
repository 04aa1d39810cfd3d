//! NAL unit framing: AVCC (length-prefixed, as FLV/RTMP and MP4 carry H.264) ↔ Annex B
//! (start codes, as openh264 reads and writes), and the avcC record
//! (`AVCDecoderConfigurationRecord`, ISO/IEC 14496-15 5.3.3.1) that FLV sends as the AVC
//! sequence header.
//!
//! Every length is checked against the bytes that are really there; nothing here indexes
//! past a slice or allocates more than its input implies.

use super::H264Error;

/// NAL unit types this crate looks at (ITU-T H.264 table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Prefix NAL unit (SVC).
    pub const PREFIX: u8 = 14;
    /// Subset sequence parameter set (SVC/MVC).
    pub const SUBSET_SPS: u8 = 15;
    /// Coded slice extension (SVC/MVC).
    pub const SLICE_EXT: u8 = 20;
}

/// The type of a NAL unit (the low five bits of its first byte); 0 for an empty one.
pub fn nal_unit_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Largest avcC record accepted (a real one is tens of bytes; this allows many large SPSs).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Iterates over the NAL units of an AVCC buffer, checking each length prefix.
///
/// Yields `Err` once (then stops) if a length runs past the end or the buffer ends inside a
/// length field. Zero-length NAL units are skipped.
pub fn avcc_nal_units(
    data: &[u8],
    nal_length_size: u8,
) -> impl Iterator<Item = Result<&[u8], H264Error>> {
    let size = usize::from(nal_length_size);
    let valid = matches!(nal_length_size, 1 | 2 | 4);
    let mut rest = data;
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed || rest.is_empty() {
            return None;
        }
        if !valid {
            failed = true;
            return Some(Err(H264Error::Malformed(
                "NAL length size must be 1, 2 or 4",
            )));
        }
        let Some((len_bytes, after)) = rest.split_at_checked(size) else {
            failed = true;
            return Some(Err(H264Error::Malformed(
                "access unit ends inside a NAL length",
            )));
        };
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((nal, after)) = after.split_at_checked(len) else {
            failed = true;
            return Some(Err(H264Error::Malformed(
                "NAL length runs past the access unit",
            )));
        };
        rest = after;
        if !nal.is_empty() {
            return Some(Ok(nal));
        }
    })
}

/// Appends the AVCC access unit `data` (NAL units each prefixed by a big-endian length of
/// `nal_length_size` bytes: 1, 2 or 4) to `out` as Annex B (4-byte start codes).
///
/// Every length is validated before anything is written: on error `out` is unchanged.
pub fn avcc_to_annexb(
    data: &[u8],
    nal_length_size: u8,
    out: &mut Vec<u8>,
) -> Result<(), H264Error> {
    let start = out.len();
    for nal in avcc_nal_units(data, nal_length_size) {
        match nal {
            Ok(nal) => {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Iterates over the NAL units of an Annex B buffer (3- or 4-byte start codes; bytes before
/// the first start code count as a NAL unit; trailing zero bytes of each unit are dropped).
pub fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // Skip a start code at the front.
        let skip = if rest.starts_with(&[0, 0, 1]) {
            3
        } else if rest.starts_with(&[0, 0, 0, 1]) {
            4
        } else {
            0
        };
        rest = &rest[skip..];
        let end = find_start_code(rest).unwrap_or(rest.len());
        let mut nal = &rest[..end];
        rest = &rest[end..];
        while let [head @ .., 0] = nal {
            nal = head;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Index of the next `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Appends the Annex B `data` to `out` as AVCC with 4-byte lengths.
pub fn annexb_to_avcc(data: &[u8], out: &mut Vec<u8>) {
    for nal in annexb_nal_units(data) {
        // A NAL unit over 4 GiB cannot come from a slice this process holds in practice; the
        // conversion saturates rather than wraps.
        let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&nal[..len as usize]);
    }
}

/// An `AVCDecoderConfigurationRecord` (the avcC box body, and FLV's AVC sequence header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (66 baseline, 77 main, 100 high, ...).
    pub profile: u8,
    /// `profile_compatibility` (the SPS's constraint flags).
    pub compatibility: u8,
    /// `AVCLevelIndication` (level × 10).
    pub level: u8,
    /// Bytes in each NAL length prefix of the samples: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Sequence parameter sets, NAL header included (at most 31).
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, NAL header included (at most 255).
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// Parses an avcC record. Requires version 1, a NAL length size of 1, 2 or 4, at least
    /// one SPS and one PPS with the right NAL types; every length is checked. The high-profile
    /// extension (chroma format, bit depths) is not kept: the SPS says the same.
    pub fn parse(record: &[u8]) -> Result<AvcConfig, H264Error> {
        let bad = H264Error::Malformed;
        if record.len() > MAX_CONFIG_BYTES {
            return Err(bad("avcC record too large"));
        }
        let [version, profile, compatibility, level, len_byte, sps_byte, rest @ ..] = record else {
            return Err(bad("avcC record shorter than its header"));
        };
        if *version != 1 {
            return Err(bad("avcC version is not 1"));
        }
        let nal_length_size = (len_byte & 3) + 1;
        if nal_length_size == 3 {
            return Err(bad("avcC NAL length size 3"));
        }
        let mut rest = rest;
        let sps = read_sets(&mut rest, usize::from(sps_byte & 0x1f), nal_type::SPS)?;
        let Some((&pps_count, after)) = rest.split_first() else {
            return Err(bad("avcC record ends before its PPS count"));
        };
        rest = after;
        let pps = read_sets(&mut rest, usize::from(pps_count), nal_type::PPS)?;
        if sps.is_empty() || pps.is_empty() {
            return Err(bad("avcC record without SPS or PPS"));
        }
        Ok(AvcConfig {
            profile: *profile,
            compatibility: *compatibility,
            level: *level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// A record for one SPS and one PPS (NAL headers included), with 4-byte NAL lengths;
    /// profile, compatibility and level are copied from the SPS.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, H264Error> {
        if nal_unit_type(sps) != nal_type::SPS || sps.len() < 4 {
            return Err(H264Error::Malformed("not an SPS NAL unit"));
        }
        if nal_unit_type(pps) != nal_type::PPS || pps.len() < 2 {
            return Err(H264Error::Malformed("not a PPS NAL unit"));
        }
        if sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
            return Err(H264Error::Malformed(
                "parameter set longer than 65535 bytes",
            ));
        }
        Ok(AvcConfig {
            profile: sps[1],
            compatibility: sps[2],
            level: sps[3],
            nal_length_size: 4,
            sps: vec![sps.to_vec()],
            pps: vec![pps.to_vec()],
        })
    }

    /// The record's bytes (without the high-profile extension). Parameter sets beyond the
    /// format's counts (31 SPS, 255 PPS) or lengths (65535) are left out.
    pub fn to_record(&self) -> Vec<u8> {
        let fits = |s: &&Vec<u8>| s.len() <= usize::from(u16::MAX);
        let sps: Vec<&Vec<u8>> = self.sps.iter().filter(fits).take(31).collect();
        let pps: Vec<&Vec<u8>> = self.pps.iter().filter(fits).take(255).collect();
        let mut out = vec![
            1,
            self.profile,
            self.compatibility,
            self.level,
            0xfc | (self.nal_length_size.clamp(1, 4) - 1),
            0xe0 | sps.len() as u8,
        ];
        for s in &sps {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s);
        }
        out.push(pps.len() as u8);
        for p in &pps {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// The parameter sets as Annex B, appended to `out`: what a decoder is fed first.
    pub fn write_annexb(&self, out: &mut Vec<u8>) {
        for set in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(set);
        }
    }
}

fn read_sets(rest: &mut &[u8], count: usize, want: u8) -> Result<Vec<Vec<u8>>, H264Error> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(([hi, lo], after)) = rest.split_first_chunk::<2>() else {
            return Err(H264Error::Malformed(
                "avcC record ends inside a parameter set length",
            ));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((set, after)) = after.split_at_checked(len) else {
            return Err(H264Error::Malformed(
                "avcC parameter set runs past the record",
            ));
        };
        if nal_unit_type(set) != want {
            return Err(H264Error::Malformed(
                "avcC parameter set has the wrong NAL type",
            ));
        }
        sets.push(set.to_vec());
        *rest = after;
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_annexb_round_trip_every_length_size() {
        // The IDR payload carries emulation-prevention bytes (00 00 03), as real ones do.
        let nals: [&[u8]; 3] = [
            &[0x67, 1, 2, 3],
            &[0x68, 0xee],
            &[0x65, 0, 0, 3, 1, 0, 0, 3, 0, 9],
        ];
        let mut four = Vec::new();
        for n in nals {
            four.extend_from_slice(&(n.len() as u32).to_be_bytes());
            four.extend_from_slice(n);
        }
        for size in [1u8, 2, 4] {
            let mut avcc = Vec::new();
            for n in nals {
                let len = (n.len() as u32).to_be_bytes();
                avcc.extend_from_slice(&len[4 - usize::from(size)..]);
                avcc.extend_from_slice(n);
            }
            let mut annexb = Vec::new();
            avcc_to_annexb(&avcc, size, &mut annexb).unwrap();
            assert_eq!(annexb_nal_units(&annexb).collect::<Vec<_>>(), nals);
            let mut back = Vec::new();
            annexb_to_avcc(&annexb, &mut back);
            assert_eq!(back, four, "length size {size}");
        }
    }

    #[test]
    fn hostile_lengths_are_errors_and_leave_out_unchanged() {
        let mut out = vec![7];
        for (data, size) in [
            (&[0, 0, 0, 9, 1, 2][..], 4u8), // claims 9, has 2
            (&[0, 0, 0][..], 4),            // ends inside the length
            (&[0xff, 0xff, 1][..], 2),
            (&[5, 1, 2, 3, 4][..], 1),
            (&[0, 1, 0x65][..], 3), // size 3 is not a thing
            (&[0xff, 0xff, 0xff, 0xff][..], 4),
        ] {
            assert!(avcc_to_annexb(data, size, &mut out).is_err(), "{data:?}");
            assert_eq!(out, [7]);
        }
        // Zero-length NAL units are skipped, not errors.
        avcc_to_annexb(&[0, 0, 0, 0, 0, 0, 0, 1, 0x09], 4, &mut out).unwrap();
        assert_eq!(out, [7, 0, 0, 0, 1, 0x09]);
    }

    #[test]
    fn annexb_split_handles_three_and_four_byte_start_codes_and_trailing_zeros() {
        let data = [
            0, 0, 0, 1, 0x67, 5, 0, 0, 0, 1, 0x68, 6, 0, 0, 0, 0, 1, 0x65, 7, 8,
        ];
        let nals: Vec<&[u8]> = annexb_nal_units(&data).collect();
        assert_eq!(nals, [&[0x67, 5][..], &[0x68, 6], &[0x65, 7, 8]]);
        assert_eq!(annexb_nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(annexb_nal_units(&[]).count(), 0);
        let nals: Vec<&[u8]> = annexb_nal_units(&[0x09, 0xf0, 0, 0, 1, 0x65]).collect();
        assert_eq!(nals, [&[0x09, 0xf0][..], &[0x65]]);
    }

    #[test]
    fn avc_config_round_trip_and_rejects() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let c = AvcConfig::from_parameter_sets(&sps, &pps).unwrap();
        assert_eq!((c.profile, c.compatibility, c.level), (0x42, 0xc0, 0x1e));
        let rec = c.to_record();
        assert_eq!(&rec[..6], &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
        assert_eq!(AvcConfig::parse(&rec).unwrap(), c);
        // Every truncation is an error, never a panic.
        for cut in 0..rec.len() {
            assert!(AvcConfig::parse(&rec[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_version = rec.clone();
        wrong_version[0] = 0;
        assert!(AvcConfig::parse(&wrong_version).is_err());
        let mut swapped = rec.clone();
        swapped[8] = 0x68; // SPS slot holds a PPS
        assert!(AvcConfig::parse(&swapped).is_err());
        assert!(AvcConfig::from_parameter_sets(&pps, &sps).is_err());
        let mut annexb = Vec::new();
        c.write_annexb(&mut annexb);
        assert_eq!(annexb_nal_units(&annexb).count(), 2);
    }
}
