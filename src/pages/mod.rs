//! The streaming page allocator: where every media payload of a stream lives, once.
//!
//! TEMPORARY SKELETON: the public API is final; the internals are replaced by the paged
//! implementation in the next commit.

use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PageMode {
    #[default]
    Paged,
    Contiguous,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub mode: PageMode,
    pub page_size: usize,
    pub global_budget_bytes: u64,
    pub max_pooled_pages: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PageMode::Paged,
            page_size: 16 * 1024,
            global_budget_bytes: 1 << 30,
            max_pooled_pages: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PagesError {
    #[error("global page budget of {budget} bytes reached ({held} held, {wanted} more wanted)")]
    GlobalBudget { budget: u64, held: u64, wanted: u64 },
    #[error("stream {stream:?} page budget of {budget} bytes reached ({held} held, {wanted} more wanted)")]
    StreamBudget { stream: String, budget: u64, held: u64, wanted: u64 },
    #[error("message of {len} bytes overfills its reservation of {reserved} bytes")]
    Overfill { len: usize, reserved: usize },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub name: String,
    pub held_bytes: u64,
    pub live_bytes: u64,
    pub live_messages: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub held_bytes: u64,
    pub live_bytes: u64,
    pub live_messages: u64,
    pub pooled_pages: u64,
    pub pooled_bytes: u64,
    pub streams: u64,
}

struct Account {
    name: String,
    held: AtomicU64,
    live: AtomicU64,
    messages: AtomicU64,
}

struct Shared {
    config: PoolConfig,
    accounts: Mutex<Vec<std::sync::Weak<Account>>>,
    held: AtomicU64,
}

#[derive(Clone)]
pub struct PagePool {
    shared: Arc<Shared>,
}

impl PagePool {
    pub fn new(config: PoolConfig) -> PagePool {
        PagePool {
            shared: Arc::new(Shared {
                config,
                accounts: Mutex::new(Vec::new()),
                held: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    pub fn writer(&self, stream: &str, budget_bytes: u64) -> StreamWriter {
        let account = Arc::new(Account {
            name: stream.to_owned(),
            held: AtomicU64::new(0),
            live: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        });
        self.shared.accounts.lock().unwrap().push(Arc::downgrade(&account));
        StreamWriter { pool: self.clone(), account, budget: budget_bytes }
    }

    pub fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        for a in self.streams() {
            s.held_bytes += a.held_bytes;
            s.live_bytes += a.live_bytes;
            s.live_messages += a.live_messages;
            s.streams += 1;
        }
        s
    }

    pub fn streams(&self) -> Vec<StreamStats> {
        let accounts = self.shared.accounts.lock().unwrap();
        accounts.iter().filter_map(|w| w.upgrade()).map(|a| a.stats()).collect()
    }
}

impl Account {
    fn stats(&self) -> StreamStats {
        StreamStats {
            name: self.name.clone(),
            held_bytes: self.held.load(Ordering::Relaxed),
            live_bytes: self.live.load(Ordering::Relaxed),
            live_messages: self.messages.load(Ordering::Relaxed),
        }
    }
}

pub struct StreamWriter {
    pool: PagePool,
    account: Arc<Account>,
    budget: u64,
}

impl StreamWriter {
    pub fn reserve(&mut self, len: usize) -> Result<MessageFill<'_>, PagesError> {
        let held = self.account.held.load(Ordering::Relaxed);
        if held + len as u64 > self.budget {
            return Err(PagesError::StreamBudget {
                stream: self.account.name.clone(),
                budget: self.budget,
                held,
                wanted: len as u64,
            });
        }
        let _ = &self.pool;
        Ok(MessageFill { writer: self, buf: Vec::with_capacity(len), reserved: len })
    }

    pub fn write(&mut self, parts: &[&[u8]]) -> Result<Message, PagesError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut fill = self.reserve(len)?;
        for p in parts {
            fill.put(p)?;
        }
        Ok(fill.publish())
    }

    pub fn stats(&self) -> StreamStats {
        self.account.stats()
    }
}

pub struct MessageFill<'w> {
    writer: &'w mut StreamWriter,
    buf: Vec<u8>,
    reserved: usize,
}

impl MessageFill<'_> {
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), PagesError> {
        if self.buf.len() + bytes.len() > self.reserved {
            return Err(PagesError::Overfill { len: self.buf.len() + bytes.len(), reserved: self.reserved });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    pub fn remaining(&self) -> usize {
        self.reserved - self.buf.len()
    }

    pub fn publish(self) -> Message {
        let len = self.buf.len() as u64;
        let a = &self.writer.account;
        a.held.fetch_add(len, Ordering::Relaxed);
        a.live.fetch_add(len, Ordering::Relaxed);
        a.messages.fetch_add(1, Ordering::Relaxed);
        Message { inner: Arc::new(Inner { data: self.buf.into_boxed_slice(), account: a.clone() }) }
    }
}

struct Inner {
    data: Box<[u8]>,
    account: Arc<Account>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let len = self.data.len() as u64;
        self.account.held.fetch_sub(len, Ordering::Relaxed);
        self.account.live.fetch_sub(len, Ordering::Relaxed);
        self.account.messages.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Message {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

impl Message {
    pub fn len(&self) -> usize {
        self.inner.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as consecutive byte slices (one per page it spans), in order.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        std::iter::once(&self.inner.data[..])
    }

    /// Appends the payload's slices to `out`, for `write_vectored`.
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.extend(self.slices().map(IoSlice::new));
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.inner.data.to_vec()
    }
}
