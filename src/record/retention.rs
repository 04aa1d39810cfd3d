//! Which segments go: sans-IO, so every rule is tested at its edges. The recorder's library
//! applies the choice (deletes the files) off the reactor.

use super::utc::UtcMs;

/// A segment as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub start: UtcMs,
    pub end: UtcMs,
    pub bytes: u64,
    /// Being written: never deleted.
    pub open: bool,
}

/// The limits of one `[[record]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segments that ended longer ago than this go (0: no age limit).
    pub keep_ms: u64,
    /// The entry's segments are kept under this many bytes, oldest going first (0: none).
    pub keep_bytes: u64,
    /// Oldest segments go while the disk has less free than this (0: none).
    pub min_free_bytes: u64,
}

/// Indices (into `segments`, any order) of the segments to delete, oldest first. `free` is the
/// disk's free space now, if known.
pub fn select(segments: &[Candidate], now: UtcMs, limits: Limits, free: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..segments.len()).filter(|&i| !segments[i].open).collect();
    order.sort_by_key(|&i| (segments[i].start, segments[i].end));
    let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut freed = 0u64;
    let mut out = Vec::new();
    for i in order {
        let s = segments[i];
        let too_old = limits.keep_ms > 0 && now.saturating_sub(s.end) > limits.keep_ms as i64;
        let too_big = limits.keep_bytes > 0 && total > limits.keep_bytes;
        let too_full = limits.min_free_bytes > 0
            && free.is_some_and(|f| f.saturating_add(freed) < limits.min_free_bytes);
        if !(too_old || too_big || too_full) {
            // Oldest first: once the oldest may stay, so may every later one, except by age
            // (segments need not end in start order), which the next ones check themselves.
            if limits.keep_ms == 0 {
                break;
            }
            continue;
        }
        total -= s.bytes;
        freed += s.bytes;
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: i64, end: i64, bytes: u64) -> Candidate {
        Candidate {
            start,
            end,
            bytes,
            open: false,
        }
    }

    const NONE: Limits = Limits {
        keep_ms: 0,
        keep_bytes: 0,
        min_free_bytes: 0,
    };

    #[test]
    fn by_age_keeps_what_ended_within_keep() {
        let s = [seg(0, 100, 1), seg(100, 200, 1), seg(200, 300, 1)];
        let limits = Limits {
            keep_ms: 100,
            ..NONE
        };
        assert_eq!(select(&s, 300, limits, None), [0]);
        assert_eq!(select(&s, 301, limits, None), [0, 1]);
        assert!(
            select(&s, 200, limits, None).is_empty(),
            "exactly keep_ms old stays"
        );
        assert!(select(&s, 10_000, NONE, None).is_empty(), "0 keeps all");
    }

    #[test]
    fn by_bytes_deletes_oldest_until_under() {
        let s = [seg(200, 300, 50), seg(0, 100, 50), seg(100, 200, 50)];
        let limits = Limits {
            keep_bytes: 100,
            ..NONE
        };
        assert_eq!(select(&s, 0, limits, None), [1]);
        let limits = Limits {
            keep_bytes: 99,
            ..NONE
        };
        assert_eq!(select(&s, 0, limits, None), [1, 2]);
        let limits = Limits {
            keep_bytes: 150,
            ..NONE
        };
        assert!(select(&s, 0, limits, None).is_empty());
    }

    #[test]
    fn by_free_space_deletes_until_enough_would_be_free() {
        let s = [seg(0, 100, 30), seg(100, 200, 30), seg(200, 300, 30)];
        let limits = Limits {
            min_free_bytes: 100,
            ..NONE
        };
        assert_eq!(select(&s, 0, limits, Some(50)), [0, 1]);
        assert_eq!(select(&s, 0, limits, Some(100)), Vec::<usize>::new());
        assert_eq!(
            select(&s, 0, limits, None),
            Vec::<usize>::new(),
            "unknown free space: nothing"
        );
    }

    #[test]
    fn never_the_segment_being_written() {
        let mut s = [seg(0, 100, 1000), seg(100, 200, 1000)];
        s[0].open = true;
        let limits = Limits {
            keep_bytes: 1,
            keep_ms: 1,
            min_free_bytes: u64::MAX,
        };
        assert_eq!(select(&s, 1_000_000, limits, Some(0)), [1]);
    }
}
