//! SPS writing for the fuzz targets that build parameter sets from chosen syntax elements
//! (`avc_config`, `h264_parameter_sets`): a bit writer with exp-Golomb codes, emulation
//! prevention, and how values are drawn. Included with `#[path]` by each target.

use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// Writes bits most-significant first.
#[derive(Default)]
pub struct BitWriter {
    pub out: Vec<u8>,
    pub bits: u32,
}

impl BitWriter {
    pub fn bit(&mut self, b: bool) {
        if self.bits % 8 == 0 {
            self.out.push(0);
        }
        if b {
            *self.out.last_mut().unwrap() |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
    }
    pub fn bits(&mut self, n: u32, v: u64) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }
    /// ue(v) for v ≤ 2^32 − 2 (the largest code with at most 31 leading zeros).
    pub fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros(); // bits in x
        self.bits(len - 1, 0);
        self.bits(len, x);
    }
    pub fn se(&mut self, v: i32) {
        let k = if v > 0 {
            2 * i64::from(v) - 1
        } else {
            -2 * i64::from(v)
        };
        self.ue(k as u32);
    }
}

/// Adds emulation prevention bytes (00 00 0x → 00 00 03 0x for x ≤ 3).
pub fn escape(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + 8);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A ue value: usually small, sometimes anywhere up to the largest code.
pub fn ue_value(u: &mut Unstructured<'_>, small: u32) -> Result<u32> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.int_in_range(0..=u32::MAX - 1)?,
        1 => u.int_in_range(small..=small.saturating_mul(1024))?,
        _ => u.int_in_range(0..=small)?,
    })
}

/// The profiles whose SPS carries chroma format, bit depths and scaling lists.
pub const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];
