//! Decode timestamps for H.264 from RTSP, where RTP carries only presentation times.
//!
//! With B-frames a camera sends frames in decode order while their RTP timestamps (the
//! presentation times) go back and forth. FLV wants a decode time that only increases plus a
//! composition offset (pts − dts ≥ 0). If frames are reordered by at most `depth` places (the
//! SPS's `max_num_reorder_frames`), the i-th decode time is the (i − depth)-th smallest
//! presentation time seen: a min-heap of the last `depth + 1` presentation times gives it with
//! no added latency. The first `depth` frames of a run, which have no such time yet, get
//! decode times 1 ms apart just before the first presentation time.
//!
//! A camera whose SPS does not say is assumed not to reorder until a frame shows otherwise;
//! the depth then grows (to [`MAX_LEARNED_DEPTH`]), costing that one frame a clipped offset.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// H.264 allows at most 16 reference frames, so no stream reorders further.
pub const MAX_DEPTH: u32 = 16;
/// How far a depth learned from the stream itself may grow.
pub const MAX_LEARNED_DEPTH: u32 = 4;

/// A frame's times in ms: `dts` strictly increasing over the run, `pts` ≥ `dts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTimes {
    pub dts: i64,
    pub pts: i64,
}

impl FrameTimes {
    /// The FLV composition time offset.
    pub fn cts(&self) -> i32 {
        (self.pts - self.dts).clamp(0, i64::from(i32::MAX)) as i32
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DecodeTimes {
    depth: u32,
    /// True when `depth` came from the SPS (it is then never grown).
    stated: bool,
    pending: BinaryHeap<Reverse<i64>>,
    /// Frames seen in this run, up to `depth`.
    seen: u32,
    first_pts: i64,
    last_dts: Option<i64>,
}

impl Default for DecodeTimes {
    fn default() -> Self {
        DecodeTimes::new(None)
    }
}

impl DecodeTimes {
    /// `depth`: the SPS's reorder depth, or `None` when it does not say.
    pub fn new(depth: Option<u32>) -> DecodeTimes {
        DecodeTimes {
            depth: depth.unwrap_or(0).min(MAX_DEPTH),
            stated: depth.is_some(),
            pending: BinaryHeap::new(),
            seen: 0,
            first_pts: 0,
            last_dts: None,
        }
    }

    /// The reorder depth in use.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// New parameters: a stated depth replaces the current one; an unstated one keeps what
    /// was learned. Starts a new run.
    pub fn set_depth(&mut self, depth: Option<u32>) {
        if let Some(d) = depth {
            self.depth = d.min(MAX_DEPTH);
            self.stated = true;
        } else if self.stated {
            self.depth = 0;
            self.stated = false;
        }
        self.restart();
    }

    /// Starts a new run at the next frame (a keyframe after a loss or a new session): the
    /// presentation times held from before are dropped. Decode times stay increasing.
    pub fn restart(&mut self) {
        self.pending.clear();
        self.seen = 0;
    }

    /// The times of the next frame in decode order, given its presentation time.
    pub fn next(&mut self, pts: i64) -> FrameTimes {
        if self.seen == 0 {
            self.first_pts = pts;
        }
        self.pending.push(Reverse(pts));
        let mut dts = if self.pending.len() > self.depth as usize {
            self.pending.pop().map_or(pts, |Reverse(p)| p)
        } else {
            self.first_pts - i64::from(self.depth - self.seen)
        };
        self.seen = (self.seen + 1).min(self.depth);
        if let Some(last) = self.last_dts {
            dts = dts.max(last + 1);
        }
        if dts > pts && !self.stated && self.depth < MAX_LEARNED_DEPTH {
            // Reordered deeper than assumed: hold one more presentation time from now on.
            self.depth += 1;
            tracing::debug!(
                depth = self.depth,
                "H.264 reorder depth learned from the stream"
            );
        }
        self.last_dts = Some(dts);
        FrameTimes {
            dts,
            pts: pts.max(dts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode order of an IBBP stream at 25 fps: I0 P3 B1 B2 P6 B4 B5 ...
    fn ibbp(triples: i64) -> Vec<i64> {
        let mut out = vec![0];
        for k in 0..triples {
            out.extend([3 * k + 3, 3 * k + 1, 3 * k + 2].map(|f| f * 40));
        }
        out
    }

    fn check(times: &[FrameTimes]) {
        for w in times.windows(2) {
            assert!(w[1].dts > w[0].dts, "dts not increasing: {w:?}");
        }
        for t in times {
            assert!(t.pts >= t.dts, "pts before dts: {t:?}");
        }
    }

    #[test]
    fn no_reordering_gives_dts_equal_to_pts() {
        let mut d = DecodeTimes::new(Some(0));
        let times: Vec<_> = (0..10).map(|i| d.next(i * 40)).collect();
        check(&times);
        assert!(times.iter().all(|t| t.dts == t.pts && t.cts() == 0));
    }

    #[test]
    fn stated_depth_two_gives_increasing_dts_and_exact_offsets() {
        let mut d = DecodeTimes::new(Some(2));
        let pts = [0, 120, 40, 80, 240, 160, 200, 360, 280, 320];
        let times: Vec<_> = pts.iter().map(|&p| d.next(p)).collect();
        check(&times);
        assert_eq!(times[0], FrameTimes { dts: -2, pts: 0 });
        assert_eq!(times[1], FrameTimes { dts: -1, pts: 120 });
        // From the third frame on, dts runs one frame interval apart, 80 ms behind display.
        let dts: Vec<_> = times[2..].iter().map(|t| t.dts).collect();
        assert_eq!(dts, vec![0, 40, 80, 120, 160, 200, 240, 280]);
        assert_eq!(times[4].cts(), 240 - 80);
        // Presentation times are never changed when the depth is right.
        assert!(times.iter().zip(pts).all(|(t, p)| t.pts == p));
    }

    #[test]
    fn an_unstated_depth_is_learned_and_then_holds() {
        let mut d = DecodeTimes::new(None);
        let pts = ibbp(10);
        let times: Vec<_> = pts.iter().map(|&p| d.next(p)).collect();
        check(&times);
        assert!(d.depth() >= 1 && d.depth() <= MAX_LEARNED_DEPTH);
        let clipped = times.iter().zip(&pts).filter(|(t, p)| t.pts != **p).count();
        assert!(clipped <= 2, "{clipped} frames clipped while learning");
    }

    #[test]
    fn a_stated_depth_is_never_grown() {
        let mut d = DecodeTimes::new(Some(0));
        let times: Vec<_> = [0, 80, 40, 120].iter().map(|&p| d.next(p)).collect();
        check(&times);
        assert_eq!(d.depth(), 0);
        assert_eq!(
            times[2],
            FrameTimes { dts: 81, pts: 81 },
            "clipped, never before dts"
        );
    }

    #[test]
    fn restart_after_a_loss_drops_old_times_and_stays_increasing() {
        let mut d = DecodeTimes::new(Some(2));
        let mut times: Vec<_> = [0, 120, 40, 80].iter().map(|&p| d.next(p)).collect();
        // Frames lost; the next keyframe is at 1000.
        d.restart();
        times.extend([1000, 1120, 1040, 1080, 1240].iter().map(|&p| d.next(p)));
        check(&times);
        assert_eq!(times[4].dts, 998);
        assert_eq!(times[8].dts, 1080);
    }

    #[test]
    fn a_timestamp_going_back_across_runs_never_breaks_dts_order() {
        let mut d = DecodeTimes::new(Some(1));
        let mut times: Vec<_> = [500, 580, 540].iter().map(|&p| d.next(p)).collect();
        d.restart();
        times.extend([100, 180, 140].iter().map(|&p| d.next(p)));
        check(&times);
    }

    #[test]
    fn depth_changes_with_new_parameters() {
        let mut d = DecodeTimes::new(None);
        d.set_depth(Some(3));
        assert_eq!(d.depth(), 3);
        d.set_depth(None);
        assert_eq!(d.depth(), 0, "a stated depth does not outlive its SPS");
        d.set_depth(Some(99));
        assert_eq!(d.depth(), MAX_DEPTH);
    }

    proptest::proptest! {
        /// Any decode order whose reordering is within the stated depth (groups of up to
        /// depth + 1 frames sent P first, then their B-frames): decode times strictly
        /// increase and no presentation time is changed.
        #[test]
        fn stated_depth_never_clips(depth in 0u32..4, groups in proptest::collection::vec(1usize..5, 1..60)) {
            let mut d = DecodeTimes::new(Some(depth));
            let mut next = 1i64;
            let mut pts = vec![0i64];
            for g in groups {
                let g = g.min(depth as usize + 1) as i64;
                pts.push((next + g - 1) * 40);
                pts.extend((next..next + g - 1).map(|f| f * 40));
                next += g;
            }
            let times: Vec<_> = pts.iter().map(|&p| d.next(p)).collect();
            for w in times.windows(2) {
                proptest::prop_assert!(w[1].dts > w[0].dts);
            }
            for (t, p) in times.iter().zip(&pts) {
                proptest::prop_assert_eq!(t.pts, *p);
            }
        }
    }
}
