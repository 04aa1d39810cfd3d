//! Bitrates from byte counters: a sampler reads the hub's counters once a second
//! ([`SAMPLE_EVERY`]) and a rate is the counter's increase over the last [`WINDOW`] divided by
//! the time between the two samples. Rates therefore lag by up to a second, average over about
//! five (smoothing the keyframe bursts of a GOP), and are the same for every client, however
//! often and however many of them scrape. Sans-IO: the caller passes the time.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The span a rate averages over.
pub const WINDOW: Duration = Duration::from_secs(5);

/// What a rate is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A stream's payload bytes in (from its publisher).
    StreamIn(String),
    /// A player's payload bytes out (player ids are unique within the hub).
    PlayerOut(u64),
}

/// Recent samples of monotonic byte counters, one series per key.
///
/// Contract: call [`sample`](Self::sample) with every counter that still exists, at
/// non-decreasing times; a key missing from a round is forgotten, and a counter that went
/// down (its stream was re-created) starts a new series.
#[derive(Debug)]
pub struct RateMeter<K = RateKey> {
    window: Duration,
    series: HashMap<K, VecDeque<(Instant, u64)>>,
    round: u64,
    seen: HashMap<K, u64>,
}

impl<K: Clone + Eq + Hash> RateMeter<K> {
    pub fn new(window: Duration) -> RateMeter<K> {
        RateMeter {
            window,
            series: HashMap::new(),
            round: 0,
            seen: HashMap::new(),
        }
    }

    /// Records one round of counter readings taken at `now`.
    pub fn sample(&mut self, now: Instant, readings: impl IntoIterator<Item = (K, u64)>) {
        self.round += 1;
        for (key, value) in readings {
            let series = self.series.entry(key.clone()).or_default();
            if series.back().is_some_and(|&(_, last)| value < last) {
                series.clear();
            }
            series.push_back((now, value));
            // Keep the newest sample at least `window` old as the baseline, none older.
            while series.len() > 2 && now.duration_since(series[1].0) >= self.window {
                series.pop_front();
            }
            self.seen.insert(key, self.round);
        }
        let round = self.round;
        self.seen.retain(|_, r| *r == round);
        let seen = &self.seen;
        self.series.retain(|k, _| seen.contains_key(k));
    }

    /// Bytes per second over the last window; `None` until a key has two samples.
    pub fn rate(&self, key: &K) -> Option<f64> {
        let series = self.series.get(key)?;
        let (&(t0, v0), &(t1, v1)) = (series.front()?, series.back()?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| (v1 - v0) as f64 / secs)
    }

    /// Keys with a series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}
