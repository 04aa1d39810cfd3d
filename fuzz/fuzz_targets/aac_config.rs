//! AAC AudioSpecificConfig: `AudioSpecificConfig::parse`, `to_bytes`, `sample_rate_index`.
//!
//! The first input byte picks a mode:
//! - raw: the rest is parsed. A parsed config has a non-zero object type, at most 4 channel
//!   bits and a 24-bit sample rate; `sample_rate_index` names the rate's table entry (if
//!   any); if the object type is one `to_bytes` writes (1..=30), `to_bytes` parses back to an
//!   equal value, and when the input used a table index its first two bytes come back as
//!   written (minus the bits after the channel configuration).
//! - generated: a config from fuzzer-chosen fields (object type 1..=30, a table rate or any
//!   24-bit rate, channels 0..=15) goes through `to_bytes` and `parse` unchanged, and every
//!   truncation of those bytes is an error.
//!
//! Invariants: no panic; the round trips above.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use moment::media::{AudioSpecificConfig, SAMPLE_RATES};

fn check_config(asc: &AudioSpecificConfig) {
    assert_ne!(asc.object_type, 0);
    assert!(asc.object_type <= 32 + 63);
    assert!(asc.channels <= 15);
    assert!(asc.sample_rate <= 0xff_ffff);
    assert_eq!(
        asc.sample_rate_index().map(usize::from),
        SAMPLE_RATES.iter().position(|&r| r == asc.sample_rate)
    );
    if (1..=30).contains(&asc.object_type) {
        let bytes = asc.to_bytes();
        assert_eq!(
            bytes.len(),
            if asc.sample_rate_index().is_some() {
                2
            } else {
                5
            }
        );
        assert_eq!(
            AudioSpecificConfig::parse(&bytes).as_ref(),
            Ok(asc),
            "{bytes:02x?}"
        );
        for cut in 0..bytes.len() {
            assert!(
                AudioSpecificConfig::parse(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}

fn raw(data: &[u8]) {
    let Ok(asc) = AudioSpecificConfig::parse(data) else {
        return;
    };
    check_config(&asc);
    let index = (data[0] & 0x07) << 1 | data[1] >> 7;
    if asc.object_type < 31 && index < 13 {
        // 5 bits object type, 4 bits index, 4 bits channels: the first 13 bits come back.
        let bytes = asc.to_bytes();
        assert_eq!(bytes[0], data[0]);
        assert_eq!(bytes[1] & 0xf8, data[1] & 0xf8);
    }
}

fn generated(u: &mut Unstructured<'_>) -> Result<()> {
    let object_type = u.int_in_range(1..=30)?;
    let sample_rate = if u.arbitrary()? {
        *u.choose(&SAMPLE_RATES)?
    } else {
        u.int_in_range(0..=0xff_ffff)?
    };
    let channels = u.int_in_range(0..=15)?;
    let asc = AudioSpecificConfig {
        object_type,
        sample_rate,
        channels,
    };
    check_config(&asc);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        let _ = generated(&mut Unstructured::new(rest));
    }
});
