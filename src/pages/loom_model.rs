//! loom models of the allocator's atomics: message and page reference counts, and the page
//! hand-back to the free list, under every interleaving of two reader threads and the writer.
//!
//! Run: `RUSTFLAGS="--cfg moment_loom" cargo test --release --lib pages::loom_model`

use super::*;
use loom::thread;

fn small_pool() -> PagePool {
    PagePool::new(PoolConfig {
        mode: PageMode::Paged,
        page_size: 1024,
        global_budget_bytes: 1 << 20,
        max_pooled_pages: 4,
    })
}

/// Two messages share a page, the second spans into a new page; clones are dropped on two
/// threads while the writer drops itself: each page is released exactly once and every counter
/// returns to zero.
#[test]
fn shared_pages_are_released_once() {
    loom::model(|| {
        let pool = small_pool();
        let mut w = pool.writer("s", 1 << 20);
        let a = w.write(&[&[1; 100]]).unwrap();
        let b = w.write(&[&[2; 1500]]).unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        let t1 = thread::spawn(move || {
            assert_eq!(a2.to_vec(), vec![1; 100]);
            drop(a2);
            drop(b);
        });
        let t2 = thread::spawn(move || {
            assert_eq!(b2.to_vec(), vec![2; 1500]);
            drop(b2);
        });
        drop(a);
        drop(w);
        t1.join().unwrap();
        t2.join().unwrap();
        let s = pool.stats();
        assert_eq!((s.held_bytes, s.live_bytes), (0, 0));
        assert_eq!(s.pooled_pages, 2);
    });
}

/// The writer keeps writing into its current page while another thread drops the last
/// message in that page: the page must survive (the writer holds it) and be reused.
#[test]
fn writer_and_dropper_race_on_the_current_page() {
    loom::model(|| {
        let pool = small_pool();
        let mut w = pool.writer("s", 1 << 20);
        let a = w.write(&[&[1; 64]]).unwrap();
        let t = thread::spawn(move || drop(a));
        let b = w.write(&[&[2; 64]]).unwrap();
        assert_eq!(b.to_vec(), vec![2; 64]);
        t.join().unwrap();
        assert_eq!(pool.stats().held_bytes, 1024);
        drop((b, w));
        assert_eq!(pool.stats().held_bytes, 0);
    });
}
