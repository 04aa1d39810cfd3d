//! Bit-level reading of H.264 RBSP (exp-Golomb codes), with emulation prevention removed first.

use super::MediaError;

/// Removes H.264 emulation prevention bytes (`00 00 03` → `00 00`) from a NAL unit payload.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads bits most-significant first; every read past the end is a [`MediaError::Truncated`].
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn truncated(&self) -> MediaError {
        MediaError::Truncated {
            what: self.what,
            need: self.pos / 8 + 1,
            have: self.data.len(),
        }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, MediaError> {
        let byte = *self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.truncated())?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` (at most 32) bits as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, MediaError> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    /// Unsigned exp-Golomb, `ue(v)`.
    pub(crate) fn ue(&mut self) -> Result<u32, MediaError> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(MediaError::Invalid {
                    what: self.what,
                    detail: "exp-Golomb code longer than 32 bits",
                });
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed exp-Golomb, `se(v)`.
    pub(crate) fn se(&mut self) -> Result<i32, MediaError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_removes_only_emulation_prevention() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
        assert_eq!(unescape_rbsp(&[0, 3, 0]), vec![0, 3, 0]);
    }

    #[test]
    fn exp_golomb_values() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        let data = [0b0100_1100];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn reads_past_end_are_errors() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0], "test");
        assert!(r.ue().is_err());
        let mut r = BitReader::new(&[], "test");
        assert!(r.bit().is_err());
    }
}
