//! The page allocator against the old design and the obvious alternatives, on a live stream's
//! message mix.
//!
//! Workload per stream: 25 fps video (a 60 KB keyframe every 2 s, inter frames of 2–12 KB) and
//! 50 audio messages/s of 60–400 bytes, interleaved as a publisher sends them; a GOP's worth of
//! messages stays alive (as the frame saver holds them: at each keyframe everything before it is
//! dropped), and each message is shared once (a player clones it, sends it and drops it).
//! Variants, in the same run:
//!   (a) old: 4 KiB pages from one global pool behind a Mutex, each message on fresh pages, the
//!       lock taken per page filled and per message dropped (the C++ PagePool);
//!   (b) contiguous: this allocator in contiguous mode (one allocation per message);
//!   (c) bytes: `Bytes::copy_from_slice` per message;
//!   (d) paged: this allocator in paged mode (default page size).
//! Output: criterion's timings, then a table of memory (bytes held by the pool's own account
//! and heap bytes from a counting allocator, each over payload bytes live, single stream) and
//! throughput (messages/s and GB/s written, published and dropped; median of 9 interleaved
//! runs) for 1 stream on 1 thread and 8 streams on 2 threads.
//!
//! Run: `cargo bench --bench pages` (add `-- --quick` for a shorter criterion pass).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use moment::pages::{Message, PageMode, PagePool, PoolConfig, StreamWriter};

// ---- a counting allocator, switched on only for the memory pass --------------------------

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the workload ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Msg {
    len: usize,
    keyframe: bool,
}

/// Two seconds of one stream (one GOP): 50 video frames and 100 audio messages, interleaved
/// in time order, sizes from a fixed-seed generator so every variant sees the same bytes.
fn gop(seed: u64) -> Vec<Msg> {
    let mut x = seed | 1;
    let mut rnd = |lo: usize, hi: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lo + (x % (hi - lo + 1) as u64) as usize
    };
    let mut out = Vec::with_capacity(150);
    for f in 0..50 {
        let len = if f == 0 { 60_000 } else { rnd(2_000, 12_000) };
        out.push(Msg {
            len,
            keyframe: f == 0,
        });
        out.push(Msg {
            len: rnd(60, 400),
            keyframe: false,
        });
        out.push(Msg {
            len: rnd(60, 400),
            keyframe: false,
        });
    }
    out
}

/// What every variant does: write a message, publish it, keep a GOP alive.
trait Variant {
    type Handle: Clone;
    fn write(&mut self, src: &[u8]) -> Self::Handle;
}

struct Stream<V: Variant> {
    variant: V,
    window: VecDeque<V::Handle>,
}

impl<V: Variant> Stream<V> {
    fn new(variant: V) -> Self {
        Stream {
            variant,
            window: VecDeque::with_capacity(256),
        }
    }

    fn push(&mut self, m: Msg, src: &[u8]) {
        if m.keyframe {
            self.window.clear();
        }
        let h = self.variant.write(&src[..m.len]);
        // Publishing shares the message: a player takes a clone, sends it and drops it, while
        // the frame saver (the window) keeps the original.
        let player = h.clone();
        black_box(&player);
        drop(player);
        self.window.push_back(h);
    }
}

struct Paged(StreamWriter);
impl Variant for Paged {
    type Handle = Message;
    fn write(&mut self, src: &[u8]) -> Message {
        self.0.write(&[src]).expect("budget is ample")
    }
}

struct Copied;
impl Variant for Copied {
    type Handle = Bytes;
    fn write(&mut self, src: &[u8]) -> Bytes {
        Bytes::copy_from_slice(src)
    }
}

/// Not a storage design: a copy into one preallocated ring, to show the memory-bandwidth
/// ceiling every variant works under.
struct Ring(Vec<u8>, usize);
impl Variant for Ring {
    type Handle = usize;
    fn write(&mut self, src: &[u8]) -> usize {
        if self.1 + src.len() > self.0.len() {
            self.1 = 0;
        }
        let at = self.1;
        self.0[at..at + src.len()].copy_from_slice(src);
        self.1 += src.len();
        black_box(at)
    }
}

const OLD_PAGE: usize = 4096;

/// The old design (the C++ PagePool): 4 KiB pages from one global pool behind one mutex; a
/// message is a chain of pages starting on a fresh page; the lock is taken for every page
/// filled, and page references are counted by hand under the same lock, per page, whenever a
/// message is shared or dropped.
struct OldPool {
    inner: Mutex<OldPoolInner>,
}

struct OldPageMeta {
    refs: u32,
    next: u32,
    data: *mut [u8; OLD_PAGE],
}

struct OldPoolInner {
    pages: Vec<OldPageMeta>,
    free: Vec<u32>,
}

// SAFETY: the raw page pointers are owned by the pool and only dereferenced by the writer that
// took the page from the free list (exclusively, before the message is shared).
unsafe impl Send for OldPoolInner {}

impl Drop for OldPoolInner {
    fn drop(&mut self) {
        for p in &self.pages {
            // SAFETY: every data pointer came from Box::into_raw and is freed once, here.
            drop(unsafe { Box::from_raw(p.data) });
        }
    }
}

struct OldMessage {
    first: u32,
    npages: u32,
    pool: Arc<OldPool>,
}

impl OldPool {
    /// Walks a message's page chain under the lock, adding `delta` to each page's count and
    /// freeing the pages that reach zero.
    fn reference(&self, first: u32, npages: u32, delta: i32) {
        let mut inner = self.inner.lock().unwrap();
        let mut p = first;
        for _ in 0..npages {
            let meta = &mut inner.pages[p as usize];
            meta.refs = meta
                .refs
                .checked_add_signed(delta)
                .expect("refcount in range");
            let (refs, next) = (meta.refs, meta.next);
            if refs == 0 {
                inner.free.push(p);
            }
            p = next;
        }
    }
}

impl Clone for OldMessage {
    fn clone(&self) -> Self {
        self.pool.reference(self.first, self.npages, 1);
        OldMessage {
            first: self.first,
            npages: self.npages,
            pool: self.pool.clone(),
        }
    }
}

impl Drop for OldMessage {
    fn drop(&mut self) {
        self.pool.reference(self.first, self.npages, -1);
    }
}

struct Old(Arc<OldPool>);
impl Variant for Old {
    type Handle = OldMessage;
    fn write(&mut self, src: &[u8]) -> OldMessage {
        let npages = src.len().div_ceil(OLD_PAGE).max(1);
        let (mut first, mut prev) = (u32::MAX, u32::MAX);
        for chunk in 0..npages {
            // One lock per page filled, as getFillPages() did.
            let (idx, data) = {
                let mut inner = self.0.inner.lock().unwrap();
                let idx = inner.free.pop().unwrap_or_else(|| {
                    let data = Box::into_raw(Box::new([0u8; OLD_PAGE]));
                    inner.pages.push(OldPageMeta {
                        refs: 0,
                        next: u32::MAX,
                        data,
                    });
                    (inner.pages.len() - 1) as u32
                });
                inner.pages[idx as usize].refs = 1;
                if prev != u32::MAX {
                    inner.pages[prev as usize].next = idx;
                }
                (idx, inner.pages[idx as usize].data)
            };
            if first == u32::MAX {
                first = idx;
            }
            prev = idx;
            let from = chunk * OLD_PAGE;
            let to = src.len().min(from + OLD_PAGE);
            // SAFETY: the page was just taken from the free list, so this writer has it alone.
            unsafe { (&mut *data)[..to - from].copy_from_slice(&src[from..to]) };
        }
        OldMessage {
            first,
            npages: npages as u32,
            pool: self.0.clone(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Old,
    Contiguous,
    Bytes,
    /// Paged mode with this page size (0: the default).
    Paged(usize),
    Ring,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::Old, "(a) old 4K+mutex"),
    (Kind::Contiguous, "(b) contiguous"),
    (Kind::Bytes, "(c) Bytes copy"),
    (Kind::Paged(0), "(d) paged (default: 8 KiB pages)"),
];

/// Other page sizes, in the table only, to show why the default is what it is.
const PAGE_SIZES: [(Kind, &str); 4] = [
    (Kind::Ring, "(ceiling) memcpy into a ring"),
    (Kind::Paged(4096), "(d) paged, 4 KiB pages"),
    (Kind::Paged(16384), "(d) paged, 16 KiB pages"),
    (Kind::Paged(65536), "(d) paged, 64 KiB pages"),
];

/// Shared per-process state of a variant: the pool every stream of a run writes into.
#[derive(Clone)]
enum Shared {
    Old(Arc<OldPool>),
    Pool(PagePool),
    None,
    Ring,
}

fn shared(kind: Kind) -> Shared {
    match kind {
        Kind::Old => Shared::Old(Arc::new(OldPool {
            inner: Mutex::new(OldPoolInner {
                pages: Vec::new(),
                free: Vec::new(),
            }),
        })),
        Kind::Contiguous => Shared::Pool(PagePool::new(PoolConfig {
            mode: PageMode::Contiguous,
            ..PoolConfig::default()
        })),
        Kind::Paged(0) => Shared::Pool(PagePool::new(PoolConfig::default())),
        Kind::Paged(page_size) => Shared::Pool(PagePool::new(PoolConfig {
            page_size,
            ..PoolConfig::default()
        })),
        Kind::Bytes => Shared::None,
        Kind::Ring => Shared::Ring,
    }
}

/// Runs `gops` GOPs of `streams` streams, round-robin per message as a server's threads would,
/// calling `sample` with the payload bytes live once before the first message (`None`: the
/// streams are set up) and after every round of messages. Returns messages and bytes written.
fn run_streams(
    shared: &Shared,
    streams: usize,
    gops: usize,
    src: &[u8],
    mut sample: impl FnMut(Option<u64>),
) -> (u64, u64) {
    enum S {
        Old(Stream<Old>),
        Paged(Stream<Paged>),
        Copied(Stream<Copied>),
        Ring(Stream<Ring>),
    }
    let mut ss: Vec<S> = (0..streams)
        .map(|i| match shared {
            Shared::Old(p) => S::Old(Stream::new(Old(p.clone()))),
            Shared::Pool(p) => S::Paged(Stream::new(Paged(p.writer(&format!("s{i}"), u64::MAX)))),
            Shared::None => S::Copied(Stream::new(Copied)),
            // A GOP's worth of ring per stream, like the window the others keep.
            Shared::Ring => S::Ring(Stream::new(Ring(vec![0; 512 * 1024], 0))),
        })
        .collect();
    let plans: Vec<Vec<Msg>> = (0..streams).map(|i| gop(0x9e37_79b9 + i as u64)).collect();
    // rounds[k][i]: the k-th message of stream i.
    let rounds: Vec<Vec<Msg>> = (0..plans[0].len())
        .map(|k| plans.iter().map(|p| p[k]).collect())
        .collect();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let mut live = vec![0u64; streams];
    sample(None);
    for _ in 0..gops {
        for round in &rounds {
            for ((s, &m), live) in ss.iter_mut().zip(round).zip(live.iter_mut()) {
                match s {
                    S::Old(s) => s.push(m, src),
                    S::Paged(s) => s.push(m, src),
                    S::Copied(s) => s.push(m, src),
                    S::Ring(s) => s.push(m, src),
                }
                if m.keyframe {
                    *live = 0;
                }
                *live += m.len as u64;
                msgs += 1;
                bytes += m.len as u64;
            }
            sample(Some(live.iter().sum()));
        }
    }
    black_box(&ss);
    (msgs, bytes)
}

/// Heap bytes and, where the variant accounts for itself, bytes held (the pool's own counter),
/// each over payload bytes live, time-averaged over 20 GOPs of one stream after one GOP of
/// warm-up. Heap bytes count from when the streams are set up (fixed structures such as the
/// free list's slots are not per-payload costs) and leave out the pool's free pages, as they
/// leave out the system
/// allocator's free lists, which the counting allocator cannot see; the free pages are
/// bounded by `max_pooled_pages` and reported by the pool's stats.
fn memory_ratio(kind: Kind, src: &[u8]) -> (f64, Option<f64>) {
    let sh = shared(kind);
    let (mut heap, mut held, mut payload) = (0f64, 0f64, 0f64);
    let mut n = 0u64;
    let mut base = 0;
    COUNTING.store(true, Ordering::SeqCst);
    run_streams(&sh, 1, 21, src, |live| {
        let Some(live) = live else {
            base = HEAP_LIVE.load(Ordering::SeqCst);
            return;
        };
        n += 1;
        if n > 150 {
            let mut h = (HEAP_LIVE.load(Ordering::Relaxed) - base) as f64;
            if let Shared::Pool(p) = &sh {
                let s = p.stats();
                held += s.held_bytes as f64;
                h -= s.pooled_bytes as f64;
            }
            heap += h;
            payload += live as f64;
        }
    });
    COUNTING.store(false, Ordering::SeqCst);
    (
        heap / payload,
        matches!(sh, Shared::Pool(_)).then_some(held / payload),
    )
}

/// One timed run of `streams` streams split over `threads` threads, each with its own share
/// of the streams and all writing into one pool: (messages/s, GB/s).
fn throughput_once(kind: Kind, streams: usize, threads: usize, src: &[u8]) -> (f64, f64) {
    // About 4000 GOPs (600 000 messages) per thread: some 100 ms, long enough that timer and
    // scheduling noise average out.
    let per_thread = streams / threads;
    let gops = 4000 / per_thread;
    let sh = shared(kind);
    let start = Instant::now();
    let (msgs, bytes) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| run_streams(&sh, per_thread, gops, src, drop)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let secs = start.elapsed().as_secs_f64();
    (msgs as f64 / secs, bytes as f64 / secs / 1e9)
}

/// Median of `ROUNDS` runs per variant, the variants taking turns in every round so that a
/// neighbour's load on a shared machine weighs on all of them alike. (The median, not the
/// best: a lock-bound design's best run is the one where the scheduler happened to keep its
/// threads apart.)
fn throughput_table(kinds: &[Kind], streams: usize, threads: usize, src: &[u8]) -> Vec<(f64, f64)> {
    const ROUNDS: usize = 9;
    let mut runs = vec![Vec::with_capacity(ROUNDS); kinds.len()];
    for _ in 0..ROUNDS {
        for (k, r) in kinds.iter().zip(runs.iter_mut()) {
            r.push(throughput_once(*k, streams, threads, src));
        }
    }
    runs.into_iter()
        .map(|mut r| {
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            r[ROUNDS / 2]
        })
        .collect()
}

fn criterion_benches(c: &mut Criterion, src: &[u8]) {
    let per_gop: u64 = gop(0x9e37_79b9).iter().map(|m| m.len as u64).sum();
    for (streams, threads) in [(1usize, 1usize), (8, 2)] {
        let mut g = c.benchmark_group(format!("pages/{streams}x{threads}t"));
        g.throughput(Throughput::Bytes(per_gop * streams as u64));
        g.measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20);
        for (kind, name) in KINDS {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let sh = shared(kind);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                run_streams(&sh, streams / threads, iters as usize, src, |_| {})
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
}

/// One variant's figures: heap/live, then (msg/s, GB/s) for 1 stream on 1 thread and for 8
/// streams on 2 threads.
struct Row {
    kind: Kind,
    heap: f64,
    one: (f64, f64),
    eight: (f64, f64),
}

fn main() {
    let src: Vec<u8> = (0..60_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &src);
    c.final_summary();

    println!();
    println!("| variant | held/live (accounted) | heap/live | 1 stream, 1 thread: msg/s, GB/s | 8 streams, 2 threads: msg/s, GB/s |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    let all: Vec<(Kind, &str)> = KINDS.into_iter().chain(PAGE_SIZES).collect();
    let kinds: Vec<Kind> = all.iter().map(|(k, _)| *k).collect();
    let ones = throughput_table(&kinds, 1, 1, &src);
    let eights = throughput_table(&kinds, 8, 2, &src);
    for (((kind, name), one), eight) in all.into_iter().zip(ones).zip(eights) {
        let (heap, held) = memory_ratio(kind, &src);
        let held = held.map_or("-".to_owned(), |h| format!("{h:.3}"));
        // The ring is preallocated: its heap ratio says nothing.
        let heap_s = if kind == Kind::Ring {
            "-".to_owned()
        } else {
            format!("{heap:.3}")
        };
        println!(
            "| {name} | {held} | {heap_s} | {:.2} M, {:.2} | {:.2} M, {:.2} |",
            one.0 / 1e6,
            one.1,
            eight.0 / 1e6,
            eight.1
        );
        rows.push(Row {
            kind,
            heap,
            one,
            eight,
        });
    }
    let get = |k: Kind| rows.iter().find(|r| r.kind == k).expect("every kind ran");
    let (old, contiguous, bytes, paged) = (
        get(Kind::Old),
        get(Kind::Contiguous),
        get(Kind::Bytes),
        get(Kind::Paged(0)),
    );
    println!();
    println!("paged heap/live: {:.3} (target <= 1.05)", paged.heap);
    println!(
        "paged / old, 8 streams on 2 threads: {:.2}x (target >= 3x)",
        paged.eight.0 / old.eight.0
    );
    println!(
        "paged / best of contiguous and Bytes: 1 thread {:.2}x, 2 threads {:.2}x (target >= 0.90x)",
        paged.one.0 / contiguous.one.0.max(bytes.one.0),
        paged.eight.0 / contiguous.eight.0.max(bytes.eight.0)
    );
}
