//! AMF0 helpers over `rml_amf0`, which recurses once per nested object/array without a bound:
//! a 4 MiB command of nested objects would overflow the stack (an abort, not a panic). So every
//! peer AMF0 body is first walked here, without allocating, checking structure and depth.
//! rml_amf0 never preallocates from declared counts (strict array counts are only loop bounds;
//! string lengths are u16), so after this check it allocates at most ~the input size.

use std::io::Cursor;

use rml_amf0::Amf0Value;

/// Deeper than any real command or metadata (which nest 2-3 levels).
pub(crate) const MAX_DEPTH: usize = 32;

/// Decodes all AMF0 values of `data` after checking it is well formed and at most
/// [`MAX_DEPTH`] deep. The error is a description for `RtmpError::Message`.
pub(crate) fn decode(data: &[u8]) -> Result<Vec<Amf0Value>, String> {
    check(data)?;
    rml_amf0::deserialize(&mut Cursor::new(data)).map_err(|e| e.to_string())
}

/// Walks `data` like rml_amf0 does (a top-level object-end marker ends the values).
pub(crate) fn check(data: &[u8]) -> Result<(), String> {
    let mut r = Reader { data, pos: 0 };
    while r.pos < data.len() {
        if data[r.pos] == 0x09 {
            return Ok(());
        }
        r.value(0)?;
    }
    Ok(())
}

/// The length of the first AMF0 value in `data`, if it is a well-formed string.
pub(crate) fn first_string_len(data: &[u8]) -> Option<usize> {
    if data.first() != Some(&0x02) || data.len() < 3 {
        return None;
    }
    let n = u16::from_be_bytes([data[1], data[2]]) as usize;
    (data.len() >= 3 + n).then_some(3 + n)
}

pub(crate) fn encode(values: &[Amf0Value]) -> Result<Vec<u8>, String> {
    rml_amf0::serialize(&values.to_vec()).map_err(|e| e.to_string())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.data.len() - self.pos < n {
            return Err(format!("truncated AMF0 at byte {}", self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("AMF0 nested deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        let marker = self.take(1)?[0];
        match marker {
            0x00 => drop(self.take(8)?),
            0x01 => drop(self.take(1)?),
            0x02 => {
                let n = self.u16()?;
                std::str::from_utf8(self.take(n)?)
                    .map_err(|_| format!("AMF0 string at byte {at} is not UTF-8"))?;
            }
            0x03 => self.properties(depth)?,
            0x05 | 0x06 => {}
            0x08 => {
                self.take(4)?;
                self.properties(depth)?;
            }
            0x0a => {
                let b = self.take(4)?;
                let count = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                for _ in 0..count {
                    if self.pos >= self.data.len() {
                        break; // rml_amf0 stops at the end of input
                    }
                    if self.data[self.pos] == 0x09 {
                        self.pos += 1;
                        break;
                    }
                    self.value(depth + 1)?;
                }
            }
            m => return Err(format!("unsupported AMF0 marker 0x{m:02x} at byte {at}")),
        }
        Ok(())
    }

    fn properties(&mut self, depth: usize) -> Result<(), String> {
        loop {
            let n = self.u16()?;
            if n == 0 {
                if self.take(1)?[0] != 0x09 {
                    return Err(format!("AMF0 empty property name at byte {}", self.pos - 3));
                }
                return Ok(());
            }
            let at = self.pos;
            std::str::from_utf8(self.take(n)?)
                .map_err(|_| format!("AMF0 property name at byte {at} is not UTF-8"))?;
            if self.pos < self.data.len() && self.data[self.pos] == 0x09 {
                return Err(format!("AMF0 property at byte {at} has no value"));
            }
            self.value(depth + 1)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend([0x03, 0x00, 0x01, b'a']);
        }
        assert!(decode(&b).unwrap_err().contains("deeper"));
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend([0x0a, 0, 0, 0, 1]);
        }
        assert!(decode(&b).unwrap_err().contains("deeper"));
    }

    #[test]
    fn round_trips_commands() {
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object([("app".to_string(), Amf0Value::Utf8String("live".into()))].into()),
            Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Boolean(true)]),
            Amf0Value::Undefined,
        ];
        let bytes = encode(&values).unwrap();
        assert_eq!(decode(&bytes).unwrap(), values);
        for n in 0..bytes.len() {
            // Truncations are errors or shorter value lists, never panics.
            let _ = decode(&bytes[..n]);
        }
    }

    #[test]
    fn first_string() {
        let b = encode(&[
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Null,
        ])
        .unwrap();
        assert_eq!(first_string_len(&b), Some(16));
        assert_eq!(first_string_len(&[0x02, 0, 5, b'a']), None);
    }
}
