// Copyright (C) The Retina Authors
// SPDX-License-Identifier: MIT OR Apache-2.0
// Added in moment's copy of retina (see PATCH.md).

//! A small, bounded reorder buffer for RTP over UDP.
//!
//! UDP may deliver packets out of order; upstream Retina skips any packet older than the one
//! before it, so one swapped pair costs a whole frame. This buffer holds packets that arrive
//! ahead of a missing sequence number for at most `max_delay` (or until `max_packets` are held)
//! and releases them in sequence order; a gap still open at the deadline is given up on, and
//! [`super::rtp::InorderParser`] then reports it as loss. Packets that arrive after their place
//! was given up on are dropped here and counted as late.
//!
//! Sans-IO: times are passed in, and the caller polls [`ReorderBuffer::deadline`] with its own
//! timer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sequence number this far from the expected one (either way) is a new sequence (a sender
/// restart), not reordering: what is held is flushed and the buffer restarts there.
const RESYNC_DISTANCE: i32 = 3000;

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Held (or ready to pop) in its place.
    Held,
    /// Arrived before the packet in front of it (still in time).
    Reordered,
    /// Its place was already released or given up on: dropped.
    Late,
    /// The same sequence number is already held: dropped.
    Duplicate,
}

#[derive(Debug)]
struct Slot<T> {
    arrival: Instant,
    item: T,
}

/// See the module docs. `T` is the packet (with whatever context the caller needs).
#[derive(Debug)]
pub(crate) struct ReorderBuffer<T> {
    max_packets: usize,
    max_delay: Duration,
    /// The sequence number of `slots[0]`; `None` before the first packet.
    next: Option<u16>,
    /// `slots[i]` is sequence number `next + i`.
    slots: VecDeque<Option<Slot<T>>>,
    held: usize,
    /// Highest sequence number pushed so far (to tell a reordered arrival).
    highest: Option<u16>,
}

fn distance(from: u16, to: u16) -> i32 {
    i32::from(to.wrapping_sub(from) as i16)
}

impl<T> ReorderBuffer<T> {
    /// `max_packets` = 0 disables reordering: every packet is released as it arrives.
    pub(crate) fn new(max_packets: usize, max_delay: Duration) -> Self {
        ReorderBuffer {
            max_packets,
            max_delay,
            next: None,
            slots: VecDeque::new(),
            held: 0,
            highest: None,
        }
    }

    /// Packets held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// The fast path: true (and the packet counts as released) when nothing is held and `seq`
    /// is the one expected, so the caller can pass it on without a copy.
    pub(crate) fn pass(&mut self, seq: u16) -> bool {
        if self.held != 0 || matches!(self.next, Some(n) if n != seq) {
            return false;
        }
        self.slots.clear();
        self.next = Some(seq.wrapping_add(1));
        self.highest = Some(seq);
        true
    }

    /// Takes a packet. Returns what happened to it and what it pushed out of the window (to be
    /// released first, in order); released packets come out of
    /// [`ReorderBuffer::pop`].
    pub(crate) fn push(&mut self, seq: u16, arrival: Instant, item: T) -> (Pushed, Vec<T>) {
        let mut flushed = Vec::new();
        let mut reordered = matches!(self.highest, Some(h) if distance(h, seq) < 0);
        if !reordered {
            self.highest = Some(seq);
        }
        let next = match self.next {
            None => {
                self.next = Some(seq);
                seq
            }
            Some(n) => n,
        };
        let d = distance(next, seq);
        if !(-RESYNC_DISTANCE..RESYNC_DISTANCE).contains(&d) {
            // A new sequence: release everything held, in order, and restart at `seq`.
            flushed.extend(self.slots.drain(..).flatten().map(|s| s.item));
            self.held = 0;
            self.next = Some(seq);
            self.highest = Some(seq);
            reordered = false;
        } else if d < 0 {
            return (Pushed::Late, flushed);
        }
        // Beyond the window: give up on the oldest places until `seq` fits.
        while distance(self.next.unwrap_or(seq), seq) as usize >= self.window() {
            if !self.give_up_front(&mut flushed) {
                self.next = Some(seq);
            }
        }
        let d = distance(self.next.unwrap_or(seq), seq) as usize;
        if self.slots.len() <= d {
            self.slots.resize_with(d + 1, || None);
        }
        if self.slots[d].is_some() {
            return (Pushed::Duplicate, flushed);
        }
        self.slots[d] = Some(Slot { arrival, item });
        self.held += 1;
        (
            if reordered {
                Pushed::Reordered
            } else {
                Pushed::Held
            },
            flushed,
        )
    }

    fn window(&self) -> usize {
        self.max_packets.max(1)
    }

    /// Gives up on the front place of the window: moves its packet (if it came) into `out`
    /// and advances past it. False when nothing is held.
    fn give_up_front(&mut self, out: &mut Vec<T>) -> bool {
        if self.held == 0 {
            self.slots.clear();
            return false;
        }
        let Some(front) = self.slots.pop_front() else {
            return false;
        };
        if let Some(s) = front {
            self.held -= 1;
            out.push(s.item);
        }
        self.next = self.next.map(|n| n.wrapping_add(1));
        true
    }

    /// The next packet in order, if it may be released at `now`: the one expected, or after the
    /// gap in front of it when the oldest held packet has waited `max_delay` or the buffer is
    /// full. The places given up on show as loss in the next stage.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<T> {
        if self.held == 0 {
            return None;
        }
        if !matches!(self.slots.front(), Some(Some(_))) {
            let oldest = self.slots.iter().flatten().map(|s| s.arrival).min()?;
            let due = self.max_packets == 0
                || self.held >= self.max_packets
                || now.saturating_duration_since(oldest) >= self.max_delay;
            if !due {
                return None;
            }
        }
        loop {
            let front = self.slots.pop_front()?;
            self.next = self.next.map(|n| n.wrapping_add(1));
            if let Some(s) = front {
                self.held -= 1;
                return Some(s.item);
            }
        }
    }

    /// When [`ReorderBuffer::pop`] will next release something without a new packet: the
    /// oldest held packet's arrival plus `max_delay`, while a gap is in front.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.held == 0 || matches!(self.slots.front(), Some(Some(_))) {
            return None;
        }
        self.slots
            .iter()
            .flatten()
            .map(|s| s.arrival + self.max_delay)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(b: &mut ReorderBuffer<u16>, now: Instant) -> Vec<u16> {
        std::iter::from_fn(|| b.pop(now)).collect()
    }

    #[test]
    fn the_fast_path_passes_only_the_expected_packet_with_nothing_held() {
        let t = Instant::now();
        let mut b = ReorderBuffer::<u16>::new(8, 50 * MS);
        assert!(b.pass(7));
        assert!(b.pass(8));
        assert!(!b.pass(10), "9 is missing");
        b.push(10, t, 10);
        assert!(!b.pass(11), "10 is held");
        assert_eq!(b.push(9, t, 9).0, Pushed::Reordered);
        assert_eq!(drain(&mut b, t), vec![9, 10]);
        assert!(b.pass(11));
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(8, 50 * MS);
        for seq in [65534u16, 65535, 0, 1] {
            assert_eq!(b.push(seq, t, seq).0, Pushed::Held);
            assert_eq!(drain(&mut b, t), vec![seq]);
        }
        assert_eq!(b.len(), 0);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_swapped_pair_is_put_back_in_order() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(8, 50 * MS);
        b.push(10, t, 10);
        assert_eq!(drain(&mut b, t), vec![10]);
        b.push(12, t, 12);
        assert_eq!(drain(&mut b, t), vec![], "12 waits for 11");
        assert_eq!(b.deadline(), Some(t + 50 * MS));
        assert_eq!(b.push(11, t + 5 * MS, 11).0, Pushed::Reordered);
        assert_eq!(drain(&mut b, t + 5 * MS), vec![11, 12]);
    }

    #[test]
    fn a_gap_is_given_up_on_at_the_deadline_and_the_straggler_is_late() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(8, 50 * MS);
        b.push(1, t, 1);
        drain(&mut b, t);
        b.push(3, t + MS, 3);
        b.push(4, t + 2 * MS, 4);
        assert_eq!(
            drain(&mut b, t + 50 * MS),
            vec![],
            "1 ms short of the deadline"
        );
        assert_eq!(drain(&mut b, t + 51 * MS), vec![3, 4]);
        assert_eq!(b.push(2, t + 60 * MS, 2).0, Pushed::Late);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_full_buffer_releases_without_waiting() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(3, 50 * MS);
        b.push(0, t, 0);
        drain(&mut b, t);
        // 1 is lost; 2, 3 wait; 4 fills the buffer.
        b.push(2, t, 2);
        b.push(3, t, 3);
        assert!(drain(&mut b, t).is_empty());
        b.push(4, t, 4);
        assert_eq!(drain(&mut b, t), vec![2, 3, 4]);
    }

    #[test]
    fn a_packet_far_ahead_pushes_the_window_and_stays_bounded() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(4, 50 * MS);
        b.push(0, t, 0);
        drain(&mut b, t);
        b.push(2, t, 2);
        let (p, flushed) = b.push(9, t, 9);
        assert_eq!(p, Pushed::Held);
        assert_eq!(flushed, vec![2], "2 fell out of the window ending at 9");
        assert!(b.len() <= 4);
        assert_eq!(drain(&mut b, t + 50 * MS), vec![9]);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(8, 50 * MS);
        b.push(5, t, 5);
        drain(&mut b, t);
        b.push(7, t, 7);
        assert_eq!(b.push(7, t, 7).0, Pushed::Duplicate);
        assert_eq!(b.push(5, t, 5).0, Pushed::Late);
    }

    #[test]
    fn a_sequence_restart_flushes_and_resyncs() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(8, 50 * MS);
        b.push(100, t, 100);
        drain(&mut b, t);
        b.push(102, t, 102);
        let (p, flushed) = b.push(40_000, t, 40_000);
        assert_eq!(p, Pushed::Held);
        assert_eq!(flushed, vec![102]);
        assert_eq!(drain(&mut b, t), vec![40_000]);
        b.push(40_001, t, 40_001);
        assert_eq!(drain(&mut b, t), vec![40_001]);
    }

    #[test]
    fn zero_packets_disables_reordering() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(0, 50 * MS);
        b.push(1, t, 1);
        let (_, flushed) = b.push(3, t, 3);
        assert_eq!(flushed, vec![1], "pushed out by 3 at once");
        assert_eq!(drain(&mut b, t), vec![3]);
        assert_eq!(b.push(2, t, 2).0, Pushed::Late);
    }

    /// Many seeded runs of loss, swaps, duplicates and late packets across the sequence
    /// number wrap: what comes out is in strictly increasing order, each packet at most once,
    /// and the buffer never holds more than its bound.
    #[test]
    fn random_impairments_keep_order_and_bounds() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for run in 0..200u16 {
            let t = Instant::now();
            let max = 1 + rand(16) as usize;
            let mut b = ReorderBuffer::new(max, 20 * MS);
            let start = 65_000u16.wrapping_add(run * 7);
            let mut wire: Vec<u16> = Vec::new();
            for i in 0..400u16 {
                let seq = start.wrapping_add(i);
                match rand(100) {
                    0..=4 => {}                              // lost
                    5..=9 => wire.push(seq.wrapping_sub(3)), // late or a duplicate
                    10..=19 if !wire.is_empty() => {
                        let last = wire.pop().unwrap(); // swapped
                        wire.push(seq);
                        wire.push(last);
                    }
                    _ => wire.push(seq),
                }
            }
            let mut out: Vec<u16> = Vec::new();
            let mut now = t;
            for seq in wire {
                now += MS * (rand(3) as u32);
                // As the UDP path does: the fast path first, the buffer otherwise.
                if b.pass(seq) {
                    out.push(seq);
                    continue;
                }
                let (_, flushed) = b.push(seq, now, seq);
                out.extend(flushed);
                out.extend(std::iter::from_fn(|| b.pop(now)));
                assert!(b.len() <= max, "run {run}: {} held, bound {max}", b.len());
            }
            out.extend(std::iter::from_fn(|| b.pop(now + 20 * MS)));
            for w in out.windows(2) {
                let step = w[1].wrapping_sub(w[0]);
                assert!(
                    step != 0 && step < 0x8000,
                    "run {run}: {} after {}",
                    w[1],
                    w[0]
                );
            }
        }
    }
}
