//! Sample-rate conversion over `speexdsp-resampler` (a pure-Rust port of speexdsp's
//! resampler; the C-binding `speexdsp` crate does not resolve).
//!
//! Takes and gives interleaved `i16`; channels are resampled one by one in planar `f32`.
//! `skip_zeros` is applied at creation, so output sample `j` lines up with input sample
//! `j * in_rate / out_rate` (no leading filter delay to account for in timestamps); the
//! filter keeps its last [`Resampler::input_latency`] input samples per channel until more
//! input, or [`Resampler::flush`], pushes them out.
//!
//! Bounds: the planar scratch buffers grow to the largest `process` input (times the rate
//! ratio) and are reused; the filter state is fixed by quality and ratio (a few KiB).
//!
//! Caveats of the crate, handled here: its multi-channel mode is broken (the filter reads
//! channel 0's history for every channel index: `speex_resampler_process_native` passes the
//! whole `mem` where the C code passes `mem + channel_index * mem_alloc_size`), so this module
//! keeps one mono state per channel; `State::new` returns `Result` but *panics* on zero
//! channels, zero rates or quality > 10 (validated before calling); `process_float` panics on
//! an empty input slice (never called with one); it clones its filter memory on every call.

use speexdsp_resampler::State;
use thiserror::Error;

/// speexdsp quality 0..=10; 4 is speexdsp's default ("desktop") and far above what 8/16 kHz
/// voice needs.
pub const QUALITY: usize = 4;

/// Rates that cannot be resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("cannot resample {channels} channels from {in_rate} Hz to {out_rate} Hz")]
pub struct ResampleError {
    /// Requested channels.
    pub channels: u8,
    /// Requested input rate.
    pub in_rate: u32,
    /// Requested output rate.
    pub out_rate: u32,
}

/// A streaming resampler for interleaved 16-bit audio.
pub struct Resampler {
    /// One mono state per channel (the crate's multi-channel mode mixes channels up).
    states: Vec<State>,
    channels: usize,
    in_rate: u32,
    out_rate: u32,
    planar_in: Vec<f32>,
    planar_out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("channels", &self.channels)
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A resampler for `channels` (1..=8) from `in_rate` to `out_rate` (each 1000..=384000).
    pub fn new(channels: u8, in_rate: u32, out_rate: u32) -> Result<Resampler, ResampleError> {
        let err = ResampleError {
            channels,
            in_rate,
            out_rate,
        };
        let rates = 1000..=384_000;
        if !(1..=8).contains(&channels) || !rates.contains(&in_rate) || !rates.contains(&out_rate) {
            return Err(err);
        }
        let states = (0..channels)
            .map(|_| {
                // Arguments validated above: `State::new` panics on anything else.
                let mut state =
                    State::new(1, in_rate as usize, out_rate as usize, QUALITY).map_err(|_| err)?;
                state.skip_zeros();
                Ok(state)
            })
            .collect::<Result<Vec<State>, ResampleError>>()?;
        Ok(Resampler {
            states,
            channels: usize::from(channels),
            in_rate,
            out_rate,
            planar_in: Vec::new(),
            planar_out: Vec::new(),
        })
    }

    /// Input samples per channel held back by the filter.
    pub fn input_latency(&self) -> usize {
        self.states[0].get_input_latency()
    }

    /// Resamples interleaved `input` (a whole number of sample frames), appending interleaved
    /// output to `out`. All input is consumed.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let ch = self.channels;
        let frames = input.len() / ch;
        if frames == 0 {
            return;
        }
        // Generous bound on output frames for this call: the ratio, plus filter slack.
        let cap = (frames as u64 * u64::from(self.out_rate)).div_ceil(u64::from(self.in_rate))
            as usize
            + 64;
        self.planar_in.resize(frames, 0.0);
        self.planar_out.resize(cap, 0.0);
        let base = out.len();
        let mut produced_frames = None;
        for c in 0..ch {
            for (dst, src) in self.planar_in.iter_mut().zip(input[c..].iter().step_by(ch)) {
                *dst = f32::from(*src);
            }
            let mut consumed = 0;
            let mut written = 0;
            while consumed < frames && written < cap {
                match self.states[c].process_float(
                    0,
                    &self.planar_in[consumed..frames],
                    &mut self.planar_out[written..cap],
                ) {
                    Ok((0, 0)) | Err(_) => break,
                    Ok((i, o)) => {
                        consumed += i;
                        written += o;
                    }
                }
            }
            // Every channel sees the same input length, so produces the same output length.
            let n = *produced_frames.get_or_insert(written);
            if c == 0 {
                out.resize(base + n * ch, 0);
            }
            for (k, s) in self.planar_out[..n.min(written)].iter().enumerate() {
                out[base + k * ch + c] = s.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }

    /// Pushes the held-back tail out by feeding [`Self::input_latency`] frames of silence.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let zeros = vec![0i16; self.input_latency() * self.channels];
        self.process(&zeros, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, n: usize, channels: usize) -> Vec<i16> {
        (0..n * channels)
            .map(|i| {
                let t = (i / channels) as f32 / rate as f32;
                (10000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    fn zero_crossings(x: &[i16]) -> usize {
        x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn rejects_what_would_panic_inside_the_crate() {
        assert!(Resampler::new(0, 8000, 48000).is_err());
        assert!(Resampler::new(1, 0, 48000).is_err());
        assert!(Resampler::new(1, 8000, 0).is_err());
        let mut r = Resampler::new(1, 8000, 48000).unwrap();
        let mut out = Vec::new();
        r.process(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn keeps_frequency_and_length_in_small_chunks() {
        for (in_rate, out_rate) in [(8000, 48000), (16000, 48000), (8000, 44100), (16000, 44100)] {
            let mut r = Resampler::new(1, in_rate, out_rate).unwrap();
            let input = tone(in_rate, 1000.0, in_rate as usize, 1);
            let mut out = Vec::new();
            for chunk in input.chunks(97) {
                r.process(chunk, &mut out);
            }
            r.flush(&mut out);
            let expect = out_rate as usize;
            assert!(
                out.len().abs_diff(expect) <= 2,
                "{in_rate}->{out_rate}: {}",
                out.len()
            );
            // 1 kHz over the middle 0.8 s: 1600 crossings.
            let zc = zero_crossings(&out[expect / 10..expect * 9 / 10]);
            assert!(zc.abs_diff(1600) <= 2, "{in_rate}->{out_rate}: {zc}");
        }
    }

    #[test]
    fn stereo_channels_stay_apart() {
        let mut r = Resampler::new(2, 8000, 48000).unwrap();
        let mut input = tone(8000, 1000.0, 8000, 2);
        for f in input.chunks_mut(2) {
            f[1] = 0; // right channel silent
        }
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out.len() % 2, 0);
        let left_peak = out
            .iter()
            .step_by(2)
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        let right_peak = out
            .iter()
            .skip(1)
            .step_by(2)
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(
            left_peak > 9000 && right_peak == 0,
            "{left_peak} {right_peak}"
        );
    }
}
