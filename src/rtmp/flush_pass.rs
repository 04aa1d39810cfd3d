//! The flush pass: streaming players' media written in one pass per tick.
//!
//! A player's media waits in its hub queue until the next tick of a grid shared by all players
//! (`write_delay_ms`), then goes out in one write. A player that streams steadily — its last
//! write complete, nothing pending, waiting for the next tick — parks its connection here. Each
//! shard wakes once per tick and walks its parked connections, each taking its items and
//! writing them ([`Streamer::on_tick`]). So a tick costs one timer and one task wake per shard
//! instead of one per player. The profile that asked for this (300 players, 300 kbit/s):
//! tokio's timer wheel was 17% of the server, and the task wakes, polls and `select!` around
//! each player's write ~10% more.
//!
//! Everything else goes back to the connection's own task, which handles it and parks again:
//! input from the peer (looked for every few ticks: acknowledgements, pause, close), a socket
//! that did not take the whole write, a kick, a stream gone quiet, shutdown. The pass never
//! waits and never reads: a parked connection is only ever one tick's work.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection that can be parked in the pass.
pub trait Streamer: Send + 'static {
    /// Why a parked connection went back to its task.
    type Outcome: Send + 'static;
    /// One tick's work (`tick` counts the shard's ticks). `None` keeps it parked.
    fn on_tick(&mut self, tick: u64) -> Option<Self::Outcome>;
    /// The outcome for a connection handed back because the server is stopping.
    fn on_stop(&mut self) -> Self::Outcome;
    /// Asks for the memory `on_tick` reaches through pointers (see `crate::prefetch`). The
    /// pass calls it one connection ahead, having asked for the connection's own bytes two
    /// ahead, so the pointers it follows are in cache by then.
    fn prefetch(&self) {}
}

/// Shards of parked connections, one task each, all on the same tick grid.
pub struct FlushPass<S: Streamer> {
    shards: Vec<Arc<Shard<S>>>,
}

struct Shard<S: Streamer> {
    inbox: Mutex<Inbox<S>>,
    /// A connection arrived in an empty shard's inbox.
    arrived: Notify,
}

struct Inbox<S: Streamer> {
    parked: Vec<Parked<S>>,
    /// The shard stopped: a connection parking now goes straight back.
    closed: bool,
}

struct Parked<S: Streamer> {
    conn: Box<S>,
    back: oneshot::Sender<(Box<S>, S::Outcome)>,
}

impl<S: Streamer> FlushPass<S> {
    /// Starts `shards` shard tasks (at least one) on the current runtime, ticking every
    /// `delay` on the grid of [`next_tick`], until `stop` is cancelled.
    pub fn start(shards: usize, delay: Duration, stop: CancellationToken) -> Arc<FlushPass<S>> {
        assert!(!delay.is_zero(), "a flush pass needs a tick");
        let shards: Vec<_> = (0..shards.max(1))
            .map(|_| {
                Arc::new(Shard {
                    inbox: Mutex::new(Inbox {
                        parked: Vec::new(),
                        closed: false,
                    }),
                    arrived: Notify::new(),
                })
            })
            .collect();
        for shard in &shards {
            tokio::spawn(run_shard(shard.clone(), delay, stop.clone()));
        }
        Arc::new(FlushPass { shards })
    }

    /// Parks `conn` in shard `shard` (modulo the count) until the pass hands it back, with why.
    /// `None`: the pass is gone (the runtime is shutting down) and the connection with it.
    pub async fn park(&self, shard: usize, mut conn: Box<S>) -> Option<(Box<S>, S::Outcome)> {
        let shard = &self.shards[shard % self.shards.len()];
        let (back, returned) = oneshot::channel();
        {
            let mut inbox = lock(&shard.inbox);
            if inbox.closed {
                let outcome = conn.on_stop();
                return Some((conn, outcome));
            }
            let was_empty = inbox.parked.is_empty();
            inbox.parked.push(Parked { conn, back });
            if was_empty {
                // A permit is stored if the shard is not waiting yet: no arrival is missed.
                shard.arrived.notify_one();
            }
        }
        returned.await.ok()
    }
}

async fn run_shard<S: Streamer>(shard: Arc<Shard<S>>, delay: Duration, stop: CancellationToken) {
    let mut parked: Vec<Parked<S>> = Vec::new();
    let mut tick = 0u64;
    loop {
        if parked.is_empty() {
            // Nothing parked: no ticks until a connection arrives.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = shard.arrived.notified() => {}
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next_tick(Instant::now(), delay)) => {}
        }
        parked.append(&mut lock(&shard.inbox).parked);
        tick = tick.wrapping_add(1);
        let mut i = 0;
        while i < parked.len() {
            if let Some(p) = parked.get(i + 2) {
                crate::prefetch::prefetch(&*p.conn);
            }
            if let Some(p) = parked.get(i + 1) {
                p.conn.prefetch();
            }
            match parked[i].conn.on_tick(tick) {
                None => i += 1,
                Some(outcome) => {
                    let p = parked.swap_remove(i);
                    // A dropped receiver: the connection's task is gone, and so is the connection.
                    let _ = p.back.send((p.conn, outcome));
                }
            }
        }
    }
    let late = {
        let mut inbox = lock(&shard.inbox);
        inbox.closed = true;
        std::mem::take(&mut inbox.parked)
    };
    for mut p in parked.into_iter().chain(late) {
        let outcome = p.conn.on_stop();
        let _ = p.back.send((p.conn, outcome));
    }
}

/// The inbox lock is only held to move connections in and out; a poisoned one is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first tick of the grid of multiples of `delay` (from a process-wide origin) that is
/// after `now`: players whose output waits share flush instants, so one timer turn serves them
/// all. With a zero delay, `now`.
pub fn next_tick(now: Instant, delay: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let step = delay.as_nanos();
    if step == 0 {
        return now;
    }
    match now.checked_duration_since(origin) {
        Some(since) => {
            let ticks = since.as_nanos() / step + 1;
            origin + Duration::from_nanos((ticks * step).min(u64::MAX as u128) as u64)
        }
        None => now + delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Stays parked for `ticks` ticks, then goes back with the tick it left at.
    struct Fake {
        ticks: u64,
        seen: u64,
        total: Arc<AtomicU64>,
    }

    #[derive(Debug, PartialEq)]
    enum Why {
        Done(u64),
        Stopped,
    }

    impl Streamer for Fake {
        type Outcome = Why;
        fn on_tick(&mut self, tick: u64) -> Option<Why> {
            self.seen += 1;
            self.total.fetch_add(1, Ordering::Relaxed);
            (self.seen >= self.ticks).then_some(Why::Done(tick))
        }
        fn on_stop(&mut self) -> Why {
            Why::Stopped
        }
    }

    fn fake(ticks: u64, total: &Arc<AtomicU64>) -> Box<Fake> {
        Box::new(Fake {
            ticks,
            seen: 0,
            total: total.clone(),
        })
    }

    /// Parks each `(shard, conn)` from a task of its own; the set yields what comes back.
    fn park_all(
        pass: &Arc<FlushPass<Fake>>,
        conns: impl IntoIterator<Item = (usize, Box<Fake>)>,
    ) -> tokio::task::JoinSet<(Box<Fake>, Why)> {
        let mut waiting = tokio::task::JoinSet::new();
        for (shard, conn) in conns {
            let pass = pass.clone();
            waiting.spawn(async move { pass.park(shard, conn).await.unwrap() });
        }
        waiting
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_connection_gets_one_call_per_tick_until_it_leaves() {
        let stop = CancellationToken::new();
        let pass = FlushPass::start(2, Duration::from_millis(40), stop.clone());
        let total = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (conn, why) = pass.park(0, fake(5, &total)).await.unwrap();
        assert_eq!(conn.seen, 5);
        assert!(matches!(why, Why::Done(_)));
        // Five ticks of 40 ms (the first within 40 ms of parking).
        let took = started.elapsed();
        assert!(
            took > Duration::from_millis(160) && took <= Duration::from_millis(200),
            "{took:?}"
        );
        // Parked again (in another shard), it is served again.
        let mut conn = conn;
        conn.ticks = 10;
        let (conn, _) = pass.park(1, conn).await.unwrap();
        assert_eq!(conn.seen, 10);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn many_connections_in_one_shard_share_its_ticks() {
        let stop = CancellationToken::new();
        let pass = FlushPass::start(1, Duration::from_millis(40), stop.clone());
        let total = Arc::new(AtomicU64::new(0));
        let mut waiting = park_all(&pass, (0..100u64).map(|i| (0, fake(1 + i % 7, &total))));
        let mut leaves = Vec::new();
        while let Some(done) = waiting.join_next().await {
            let (conn, why) = done.unwrap();
            assert_eq!(conn.seen, conn.ticks);
            let Why::Done(tick) = why else {
                panic!("{why:?}")
            };
            leaves.push(tick);
        }
        // Every connection was called once per tick from the tick it arrived in: the 100 calls
        // of the first tick are one shard turn, and the last leave is at the 7th tick.
        assert_eq!(*leaves.iter().max().unwrap(), 7);
        assert_eq!(
            total.load(Ordering::Relaxed),
            (0..100u64).map(|i| 1 + i % 7).sum::<u64>()
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_hands_every_connection_back_and_refuses_new_ones() {
        let stop = CancellationToken::new();
        let pass = FlushPass::start(2, Duration::from_millis(40), stop.clone());
        let total = Arc::new(AtomicU64::new(0));
        let mut waiting = park_all(&pass, (0..10).map(|shard| (shard, fake(u64::MAX, &total))));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        while let Some(done) = waiting.join_next().await {
            assert_eq!(done.unwrap().1, Why::Stopped);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (_, why) = pass.park(0, fake(1, &total)).await.unwrap();
        assert_eq!(why, Why::Stopped);
    }

    #[test]
    fn ticks_fall_on_one_grid() {
        let delay = Duration::from_millis(40);
        let now = Instant::now();
        let a = next_tick(now, delay);
        let b = next_tick(now + Duration::from_millis(13), delay);
        assert!(a > now && a <= now + delay);
        assert!(b == a || b == a + delay);
        assert_eq!(next_tick(a, delay), a + delay);
        assert_eq!(next_tick(now, Duration::ZERO), now);
    }
}
