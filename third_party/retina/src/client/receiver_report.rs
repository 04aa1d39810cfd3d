// Copyright (C) The Retina Authors
// SPDX-License-Identifier: MIT OR Apache-2.0
// Added in moment's copy of retina (see PATCH.md).

//! RTCP receiver reports for UDP streams ([RFC 3550 §6.4.2]), which upstream Retina does not
//! send. Cameras and servers use them to see that the receiver is alive (some end a UDP session
//! without them) and how much is lost.
//!
//! Sans-IO: [`ReceptionStats`] is fed every in-order RTP packet and every sender report and
//! writes the compound RR + SDES packet; [`ReportSchedule`] says when the next one is due
//! (§6.3: 5 s on average, randomized over 0.5–1.5 of it, the first one after half of that).
//!
//! [RFC 3550 §6.4.2]: https://datatracker.ietf.org/doc/html/rfc3550#section-6.4.2

use std::time::{Duration, Instant};

/// §6.2's minimum interval for a session this small.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// When reports are due.
#[derive(Debug)]
pub(crate) struct ReportSchedule {
    next: Instant,
}

impl ReportSchedule {
    /// The first report comes after half the interval; `unit_random` is uniform in [0, 1).
    pub(crate) fn new(start: Instant, unit_random: f64) -> Self {
        ReportSchedule {
            next: start + randomized(REPORT_INTERVAL / 2, unit_random),
        }
    }

    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// Call after sending at `now`; schedules the next report.
    pub(crate) fn sent(&mut self, now: Instant, unit_random: f64) {
        self.next = now + randomized(REPORT_INTERVAL, unit_random);
    }
}

/// `interval` × [0.5, 1.5), so that receivers started together do not report in step (§6.3.1).
fn randomized(interval: Duration, unit_random: f64) -> Duration {
    interval.mul_f64(0.5 + unit_random.clamp(0.0, 1.0))
}

/// Reception statistics of one source, as §A.3 and §A.8 define them.
#[derive(Debug)]
pub(crate) struct ReceptionStats {
    clock_rate: u32,
    /// Our SSRC (random per session) and the CNAME we report under.
    own_ssrc: u32,
    cname: String,
    source_ssrc: Option<u32>,
    base_seq: u32,
    /// Extended highest sequence number (cycles in the high 16 bits).
    max_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter × 16, in RTP timestamp units (§A.8).
    jitter: u32,
    last_transit: Option<i32>,
    epoch: Instant,
    /// Middle 32 bits of the last SR's NTP timestamp, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    pub(crate) fn new(clock_rate: u32, own_ssrc: u32, cname: String, epoch: Instant) -> Self {
        ReceptionStats {
            clock_rate: clock_rate.max(1),
            own_ssrc,
            cname,
            source_ssrc: None,
            base_seq: 0,
            max_seq: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0,
            last_transit: None,
            epoch,
            last_sr: None,
        }
    }

    /// An RTP packet accepted in sequence order (after reordering).
    pub(crate) fn rtp(&mut self, ssrc: u32, seq: u16, rtp_timestamp: u32, arrival: Instant) {
        if self.source_ssrc != Some(ssrc) {
            // First packet, or a new source: statistics restart.
            self.source_ssrc = Some(ssrc);
            self.base_seq = u32::from(seq);
            self.max_seq = u32::from(seq);
            self.received = 0;
            self.expected_prior = 0;
            self.received_prior = 0;
            self.jitter = 0;
            self.last_transit = None;
        } else {
            let max_low = self.max_seq as u16;
            let delta = seq.wrapping_sub(max_low);
            if delta != 0 && delta < 0x8000 {
                if seq < max_low {
                    self.max_seq = self.max_seq.wrapping_add(1 << 16);
                }
                self.max_seq = (self.max_seq & 0xffff_0000) | u32::from(seq);
            }
        }
        self.received = self.received.wrapping_add(1);
        let arrival_units = (arrival.saturating_duration_since(self.epoch).as_secs_f64()
            * f64::from(self.clock_rate)) as u64 as u32;
        let transit = arrival_units.wrapping_sub(rtp_timestamp) as i32;
        if let Some(last) = self.last_transit {
            let d = transit.wrapping_sub(last).unsigned_abs();
            // J += (|D| - J) / 16, in the ×16 fixed point of §A.8.
            self.jitter = self
                .jitter
                .wrapping_add(d)
                .wrapping_sub((self.jitter.wrapping_add(8)) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// A sender report from the source: `ntp` is its 64-bit NTP timestamp.
    pub(crate) fn sender_report(&mut self, ntp: u64, arrival: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, arrival));
    }

    /// The compound RR + SDES(CNAME) packet to send at `now` (an empty RR before the first
    /// RTP packet), and resets the interval counters.
    pub(crate) fn report(&mut self, now: Instant) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self.source_ssrc {
            None => {
                out.extend_from_slice(&[0x80, 201, 0, 1]);
                out.extend_from_slice(&self.own_ssrc.to_be_bytes());
            }
            Some(source) => {
                let expected = self.max_seq.wrapping_sub(self.base_seq).wrapping_add(1);
                let lost = i64::from(expected) - i64::from(self.received);
                let lost = lost.clamp(-0x80_0000, 0x7f_ffff) as i32;
                let expected_interval = expected.wrapping_sub(self.expected_prior);
                let received_interval = self.received.wrapping_sub(self.received_prior);
                self.expected_prior = expected;
                self.received_prior = self.received;
                let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
                let fraction = if expected_interval == 0 || lost_interval <= 0 {
                    0u8
                } else {
                    ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
                };
                let (lsr, dlsr) = match self.last_sr {
                    None => (0, 0),
                    Some((lsr, at)) => {
                        let delay = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
                        (lsr, delay.min(f64::from(u32::MAX)) as u32)
                    }
                };
                out.extend_from_slice(&[0x81, 201, 0, 7]);
                out.extend_from_slice(&self.own_ssrc.to_be_bytes());
                out.extend_from_slice(&source.to_be_bytes());
                out.push(fraction);
                out.extend_from_slice(&(lost as u32).to_be_bytes()[1..]);
                out.extend_from_slice(&self.max_seq.to_be_bytes());
                out.extend_from_slice(&(self.jitter >> 4).to_be_bytes());
                out.extend_from_slice(&lsr.to_be_bytes());
                out.extend_from_slice(&dlsr.to_be_bytes());
            }
        }
        // SDES with one chunk: our SSRC, CNAME, the end item, padding to a 32-bit boundary.
        let cname = &self.cname.as_bytes()[..self.cname.len().min(255)];
        let chunk_len = 4 + 2 + cname.len() + 1;
        let padded = chunk_len.div_ceil(4) * 4;
        let words = (4 + padded) / 4 - 1;
        out.extend_from_slice(&[0x81, 202]);
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&self.own_ssrc.to_be_bytes());
        out.push(1);
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        out.resize(out.len() + (padded - chunk_len) + 1, 0);
        out
    }

    /// Packets expected and received since the first one.
    #[cfg(test)]
    fn totals(&self) -> (u32, u32) {
        (
            self.max_seq.wrapping_sub(self.base_seq).wrapping_add(1),
            self.received,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn stats(t: Instant) -> ReceptionStats {
        ReceptionStats::new(90_000, 0x1122_3344, "moment@host".to_owned(), t)
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn schedule_randomizes_around_the_interval() {
        let t = Instant::now();
        let mut s = ReportSchedule::new(t, 0.0);
        assert_eq!(
            s.due(),
            t + Duration::from_millis(1250),
            "first: half of 5 s × 0.5"
        );
        s.sent(t, 0.0);
        assert_eq!(s.due(), t + Duration::from_millis(2500));
        s.sent(t, 0.5);
        assert_eq!(s.due(), t + REPORT_INTERVAL);
        s.sent(t, 1.0);
        assert_eq!(s.due(), t + Duration::from_millis(7500), "clamped at 1.5 ×");
        s.sent(t, 7.0);
        assert_eq!(s.due(), t + Duration::from_millis(7500));
    }

    #[test]
    fn empty_report_before_any_packet() {
        let t = Instant::now();
        let r = stats(t).report(t);
        assert_eq!(&r[..4], &[0x80, 201, 0, 1]);
        assert_eq!(be32(&r, 4), 0x1122_3344);
        assert_eq!(r[9], 202, "followed by SDES");
        assert_eq!(r.len() % 4, 0);
        let sdes_words = u16::from_be_bytes([r[10], r[11]]) as usize;
        assert_eq!(8 + (sdes_words + 1) * 4, r.len());
    }

    #[test]
    fn loss_fraction_and_cumulative_loss_follow_a3() {
        let t = Instant::now();
        let mut s = stats(t);
        // 0..=9 with 3 and 4 missing: 10 expected, 8 received.
        for seq in (0u16..10).filter(|q| !matches!(q, 3 | 4)) {
            s.rtp(7, seq, u32::from(seq) * 3000, t + MS * 33 * u32::from(seq));
        }
        assert_eq!(s.totals(), (10, 8));
        let r = s.report(t + Duration::from_secs(1));
        assert_eq!(&r[..4], &[0x81, 201, 0, 7]);
        assert_eq!(be32(&r, 8), 7, "source ssrc");
        assert_eq!(r[12], 51, "fraction lost = 2/10 × 256");
        assert_eq!(&r[13..16], &[0, 0, 2], "cumulative lost");
        assert_eq!(be32(&r, 16), 9, "extended highest seq");
        // Nothing lost in the next interval.
        for seq in 10u16..20 {
            s.rtp(7, seq, u32::from(seq) * 3000, t + MS * 33 * u32::from(seq));
        }
        let r = s.report(t + Duration::from_secs(2));
        assert_eq!(r[12], 0);
        assert_eq!(&r[13..16], &[0, 0, 2]);
    }

    #[test]
    fn sequence_wrap_extends_the_highest_number() {
        let t = Instant::now();
        let mut s = stats(t);
        for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
            s.rtp(1, seq, i as u32 * 3000, t + MS * 33 * i as u32);
        }
        assert_eq!(s.totals(), (4, 4));
        let r = s.report(t);
        assert_eq!(be32(&r, 16), 0x0001_0001, "one cycle, seq 1");
        assert_eq!(&r[13..16], &[0, 0, 0]);
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_grows_with_spread() {
        let t = Instant::now();
        let mut s = stats(t);
        for i in 0u32..50 {
            s.rtp(1, i as u16, i * 3600, t + MS * 40 * i);
        }
        assert_eq!(be32(&s.report(t), 20), 0);
        let mut s = stats(t);
        for i in 0u32..50 {
            let wobble = if i % 2 == 0 { 0 } else { 10 };
            s.rtp(1, i as u16, i * 3600, t + MS * (40 * i + wobble));
        }
        // |D| = 10 ms = 900 units every packet; J converges towards 900.
        let j = be32(&s.report(t), 20);
        assert!((800..=900).contains(&j), "jitter {j}");
    }

    #[test]
    fn lsr_and_dlsr_come_from_the_last_sender_report() {
        let t = Instant::now();
        let mut s = stats(t);
        s.rtp(1, 0, 0, t);
        s.sender_report(0x0000_1234_5678_0000, t);
        let r = s.report(t + Duration::from_millis(500));
        assert_eq!(be32(&r, 24), 0x1234_5678);
        assert_eq!(be32(&r, 28), 32768, "0.5 s in 1/65536 s");
    }

    #[test]
    fn a_new_source_restarts_the_statistics() {
        let t = Instant::now();
        let mut s = stats(t);
        for seq in 0u16..5 {
            s.rtp(1, seq, 0, t);
        }
        s.rtp(2, 1000, 0, t);
        assert_eq!(s.totals(), (1, 1));
        assert_eq!(be32(&s.report(t), 8), 2);
    }
}
