//! AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1): the body of an FLV AAC sequence header
//! after its 2-byte tag header.

use super::bits::BitReader;
use super::MediaError;

/// Sampling frequencies by `samplingFrequencyIndex`.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The fields of an AudioSpecificConfig a server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 = AAC-LC, 5 = SBR, 29 = PS).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (1 = mono, 2 = stereo; 0 = defined in-band).
    pub channels: u8,
}

impl AudioSpecificConfig {
    /// Parses the leading fields; extensions after the channel configuration are ignored.
    pub fn parse(data: &[u8]) -> Result<AudioSpecificConfig, MediaError> {
        let mut r = BitReader::new(data, "AAC AudioSpecificConfig");
        let mut object_type = r.bits(5)? as u8;
        if object_type == 31 {
            object_type = 32 + r.bits(6)? as u8;
        }
        let index = r.bits(4)? as usize;
        let sample_rate = match index {
            15 => r.bits(24)?,
            i => *SAMPLE_RATES.get(i).ok_or(MediaError::Invalid {
                what: "AAC AudioSpecificConfig",
                detail: "reserved samplingFrequencyIndex",
            })?,
        };
        let channels = r.bits(4)? as u8;
        if object_type == 0 {
            return Err(MediaError::Invalid {
                what: "AAC AudioSpecificConfig",
                detail: "audio object type 0",
            });
        }
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channels,
        })
    }

    /// Serialises the config (2 bytes, or 5 with an explicit sample rate; object types
    /// below 31 only, which covers every AAC profile FLV carries).
    pub fn to_bytes(&self) -> Vec<u8> {
        let ot = u64::from(self.object_type.min(30));
        let ch = u64::from(self.channels & 0x0f);
        match SAMPLE_RATES.iter().position(|&r| r == self.sample_rate) {
            Some(i) => {
                let v = (ot << 11) | ((i as u64) << 7) | (ch << 3);
                (v as u16).to_be_bytes().to_vec()
            }
            None => {
                // 5 + 4 + 24 + 4 = 37 bits, padded to 40.
                let v = (ot << 35)
                    | (15 << 31)
                    | (u64::from(self.sample_rate & 0xff_ffff) << 7)
                    | (ch << 3);
                v.to_be_bytes()[3..].to_vec()
            }
        }
    }

    /// The `samplingFrequencyIndex`, if the rate is one of the standard ones.
    pub fn sample_rate_index(&self) -> Option<u8> {
        SAMPLE_RATES
            .iter()
            .position(|&r| r == self.sample_rate)
            .map(|i| i as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fixture_config() {
        // fixtures/demo.mp4 esds: AAC-LC 48 kHz stereo, followed by an SBR sync extension.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(
            asc,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 48000,
                channels: 2
            }
        );
        assert_eq!(asc.to_bytes(), vec![0x11, 0x90]);
    }

    #[test]
    fn explicit_rate_round_trip_and_truncations() {
        let asc = AudioSpecificConfig {
            object_type: 2,
            sample_rate: 37800,
            channels: 1,
        };
        let bytes = asc.to_bytes();
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        for split in 0..bytes.len() {
            assert!(
                AudioSpecificConfig::parse(&bytes[..split]).is_err(),
                "split at {split}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data: Vec<u8>) {
            let _ = AudioSpecificConfig::parse(&data);
        }
    }
}
