//! Unit and property tests of the allocator: contents round-trip, pages are shared and
//! recycled, budgets hold, and every counter returns to zero when everything is dropped.

use super::*;
use proptest::prelude::*;

fn pool(mode: PageMode, page_size: usize) -> PagePool {
    PagePool::new(PoolConfig {
        mode,
        page_size,
        global_budget_bytes: 1 << 30,
        max_pooled_pages: 64,
    })
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

fn assert_idle(p: &PagePool) {
    let s = p.stats();
    assert_eq!((s.held_bytes, s.live_bytes), (0, 0), "{s:?}");
}

const MODES: [PageMode; 2] = [PageMode::Paged, PageMode::Contiguous];

#[test]
fn small_messages_share_one_page() {
    let p = pool(PageMode::Paged, 16 * 1024);
    let mut w = p.writer("audio", 1 << 20);
    let msgs: Vec<Message> = (0..100)
        .map(|i| w.write(&[&pattern(i, 60)]).unwrap())
        .collect();
    // 100 × (60 + 24-byte header, 8-aligned) = 8800 bytes: one 16 KiB page for all of them.
    assert_eq!(w.stats().held_bytes, 16 * 1024);
    assert_eq!(w.stats().live_bytes, 6000);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.slices().count(), 1);
        assert_eq!(m.to_vec(), pattern(i, 60));
    }
}

#[test]
fn a_large_message_spans_pages_and_round_trips() {
    for mode in MODES {
        let p = pool(mode, 4096);
        let mut w = p.writer("video", 1 << 20);
        let small = w.write(&[b"head"]).unwrap();
        let big = pattern(1, 60_000);
        let m = w.write(&[&big[..10], &big[10..]]).unwrap();
        assert_eq!(m.len(), 60_000);
        assert_eq!(m.to_vec(), big);
        assert!(m.slices().all(|s| !s.is_empty()));
        if mode == PageMode::Paged {
            assert_eq!(
                m.slices().count(),
                15,
                "60 000 bytes over 4 KiB pages after a small message"
            );
        }
        assert_eq!(small.to_vec(), b"head");
        drop((small, m, w));
        assert_idle(&p);
    }
}

#[test]
fn clone_shares_the_payload() {
    for mode in MODES {
        let p = pool(mode, 4096);
        let mut w = p.writer("s", 1 << 20);
        let m = w.write(&[&pattern(3, 9000)]).unwrap();
        let c = m.clone();
        assert!(m.ptr_eq(&c));
        let a: Vec<*const u8> = m.slices().map(<[u8]>::as_ptr).collect();
        let b: Vec<*const u8> = c.slices().map(<[u8]>::as_ptr).collect();
        assert_eq!(a, b, "a clone reads the same bytes, not a copy");
        assert_eq!(w.stats().live_bytes, 9000);
    }
}

#[test]
fn a_page_is_recycled_when_its_last_message_drops() {
    let p = pool(PageMode::Paged, 4096);
    let mut w = p.writer("s", 1 << 20);
    let first: Vec<Message> = (0..3)
        .map(|i| w.write(&[&pattern(i, 1000)]).unwrap())
        .collect();
    let spill = w.write(&[&pattern(9, 3000)]).unwrap(); // starts in page 1, ends in page 2
    assert_eq!(w.stats().held_bytes, 2 * 4096);
    drop(first);
    assert_eq!(
        w.stats().held_bytes,
        2 * 4096,
        "page 1 still holds the start of `spill`"
    );
    drop(spill);
    assert_eq!(
        w.stats().held_bytes,
        4096,
        "page 1 recycled; the writer keeps its current page"
    );
    assert_eq!(p.stats().pooled_pages, 1);
    drop(w);
    assert_idle(&p);
    assert_eq!(p.stats().pooled_pages, 2);
}

#[test]
fn messages_outlive_their_writer() {
    for mode in MODES {
        let p = pool(mode, 2048);
        let mut w = p.writer("s", 1 << 20);
        let m = w.write(&[&pattern(5, 5000)]).unwrap();
        drop(w);
        assert_eq!(
            p.streams().len(),
            1,
            "the stream's account lives while its messages do"
        );
        assert_eq!(m.to_vec(), pattern(5, 5000));
        drop(m);
        assert_idle(&p);
        assert!(p.streams().is_empty());
    }
}

#[test]
fn stream_budget_is_an_error_and_charges_nothing() {
    for mode in MODES {
        let p = pool(mode, 4096);
        let mut w = p.writer("s", 10_000);
        let keep = w.write(&[&[0; 3000]]).unwrap();
        let before = w.stats();
        let err = w.reserve(20_000).map(|_| ()).unwrap_err();
        assert!(err.is_budget(), "{err}");
        assert!(matches!(
            err,
            PagesError::StreamBudget { budget: 10_000, .. }
        ));
        assert_eq!(w.stats(), before);
        drop((keep, w));
        assert_idle(&p);
    }
}

#[test]
fn global_budget_is_an_error_across_streams() {
    for mode in MODES {
        let p = PagePool::new(PoolConfig {
            mode,
            page_size: 4096,
            global_budget_bytes: 16_384,
            max_pooled_pages: 4,
        });
        let mut a = p.writer("a", u64::MAX);
        let mut b = p.writer("b", u64::MAX);
        let ma = a.write(&[&[1; 8000]]).unwrap();
        let err = b.write(&[&[2; 9000]]).unwrap_err();
        assert!(
            matches!(err, PagesError::GlobalBudget { budget: 16_384, .. }),
            "{err}"
        );
        drop(ma);
        drop(a);
        let mb = b.write(&[&[2; 9000]]).unwrap();
        assert_eq!(mb.to_vec(), vec![2; 9000]);
        drop((mb, b));
        assert_idle(&p);
    }
}

#[test]
fn overfill_is_an_error_and_writes_nothing() {
    for mode in MODES {
        let p = pool(mode, 4096);
        let mut w = p.writer("s", 1 << 20);
        let mut f = w.reserve(5).unwrap();
        f.put(b"abc").unwrap();
        assert_eq!(
            f.put(b"def"),
            Err(PagesError::Overfill {
                len: 6,
                reserved: 5
            })
        );
        f.put(b"de").unwrap();
        assert_eq!(f.remaining(), 0);
        assert_eq!(f.publish().to_vec(), b"abcde");
    }
}

#[test]
fn an_unfilled_reservation_gives_back_its_space() {
    for mode in MODES {
        let p = pool(mode, 4096);
        let mut w = p.writer("s", 1 << 20);
        let mut f = w.reserve(50_000).unwrap();
        f.put(&pattern(1, 100)).unwrap();
        let m = f.publish();
        assert_eq!(m.to_vec(), pattern(1, 100));
        let held = w.stats().held_bytes;
        assert!(
            held <= 4096,
            "{mode:?}: {held} bytes held for a 100-byte message"
        );
        // An abandoned reservation returns everything.
        let f = w.reserve(50_000).unwrap();
        drop(f);
        assert_eq!(w.stats().held_bytes, held);
        let next = w.write(&[b"after"]).unwrap();
        assert_eq!(next.to_vec(), b"after");
        drop((m, next, w));
        assert_idle(&p);
    }
}

#[test]
fn io_slices_cover_the_payload_in_order() {
    let p = pool(PageMode::Paged, 1024);
    let mut w = p.writer("s", 1 << 20);
    let data = pattern(2, 5000);
    let m = w.write(&[&data]).unwrap();
    let mut v = Vec::new();
    m.io_slices(&mut v);
    let joined: Vec<u8> = v.iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(joined, data);
}

#[test]
fn header_exactly_filling_a_page_puts_the_payload_on_the_next() {
    let p = pool(PageMode::Paged, 1024);
    let mut w = p.writer("s", 1 << 20);
    // Fill the first page so that exactly one header's worth (24 bytes) is left.
    let room = 1024 - page::PAGE_DATA_START - message::MSG_HEADER;
    let a = w.write(&[&vec![7; room - message::MSG_HEADER]]).unwrap();
    assert_eq!(w.stats().held_bytes, 1024);
    let b = w.write(&[b"payload on the next page"]).unwrap();
    assert_eq!(
        w.stats().held_bytes,
        2048,
        "b's header ends page 1, its payload is on page 2"
    );
    assert_eq!(b.to_vec(), b"payload on the next page");
    assert_eq!(b.slices().count(), 1);
    let e = w.write(&[]).unwrap();
    assert!(e.is_empty() && e.slices().next().is_none());
    drop((a, b, e, w));
    assert_idle(&p);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random message sizes and a random drop order, in both modes and several page sizes:
    /// every payload reads back intact and the pool returns to idle.
    #[test]
    fn random_sizes_and_drop_orders(
        sizes in proptest::collection::vec(0usize..40_000, 1..60),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 60),
        page_size in prop::sample::select(vec![1024usize, 4096, 16 * 1024]),
        contiguous in any::<bool>(),
    ) {
        let mode = if contiguous { PageMode::Contiguous } else { PageMode::Paged };
        let p = pool(mode, page_size);
        let mut w = p.writer("s", u64::MAX);
        let mut live: Vec<(usize, Message)> = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = pattern(i, len);
            let split = len / 3;
            live.push((i, w.write(&[&data[..split], &data[split..]]).unwrap()));
            // Drop a random live message now and then, keeping the rest.
            if i % 3 == 2 {
                let (j, m) = live.remove(order[i].index(live.len()));
                prop_assert_eq!(m.to_vec(), pattern(j, sizes[j]));
            }
        }
        let total: u64 = live.iter().map(|(_, m)| m.len() as u64).sum();
        prop_assert_eq!(p.stats().live_bytes, total);
        while !live.is_empty() {
            let k = order[live.len() % order.len()].index(live.len());
            let (j, m) = live.remove(k);
            prop_assert_eq!(m.to_vec(), pattern(j, sizes[j]));
        }
        drop(w);
        let s = p.stats();
        prop_assert_eq!((s.held_bytes, s.live_bytes, s.streams), (0, 0, 0));
    }

    /// Several writer threads; every message is cloned to reader threads which check and drop
    /// them in their own order.
    #[test]
    fn threads_write_share_and_drop(
        sizes in proptest::collection::vec(0usize..20_000, 1..40),
        contiguous in any::<bool>(),
    ) {
        let mode = if contiguous { PageMode::Contiguous } else { PageMode::Paged };
        let p = pool(mode, 4096);
        std::thread::scope(|scope| {
            for t in 0..3 {
                let p = p.clone();
                let sizes = sizes.clone();
                scope.spawn(move || {
                    let mut w = p.writer(&format!("s{t}"), u64::MAX);
                    let (tx1, rx1) = std::sync::mpsc::channel::<(usize, Message)>();
                    let (tx2, rx2) = std::sync::mpsc::channel::<(usize, Message)>();
                    let check = |rx: std::sync::mpsc::Receiver<(usize, Message)>, reverse: bool| {
                        let mut got: Vec<_> = rx.iter().collect();
                        if reverse { got.reverse(); }
                        for (i, m) in got {
                            assert_eq!(m.to_vec(), pattern(i + t, m.len()));
                        }
                    };
                    std::thread::scope(|inner| {
                        inner.spawn(|| check(rx1, false));
                        inner.spawn(|| check(rx2, true));
                        for (i, &len) in sizes.iter().enumerate() {
                            let m = w.write(&[&pattern(i + t, len)]).unwrap();
                            tx1.send((i, m.clone())).unwrap();
                            tx2.send((i, m)).unwrap();
                        }
                        drop((tx1, tx2));
                    });
                });
            }
        });
        let s = p.stats();
        prop_assert_eq!((s.held_bytes, s.live_bytes, s.streams), (0, 0, 0));
    }
}
