//! A running rendition's codec thread: H.264 in (the source's AVCC access units), H.264 out at
//! the rendition's size, behind a queue bounded in frames and bytes.
//!
//! The thread owns the [`VideoTranscoder`] (openh264 decoder, scaler, encoder), which is built
//! on it and never crosses threads. The async side offers input without ever waiting: when the
//! queue is full the frame is dropped, and so is every frame after it up to the next source
//! keyframe (a decoder fed a broken reference chain makes garbage). Output comes back through a
//! small bounded channel; when the async side does not take it the thread waits, its input
//! queue fills, and input is dropped: latency and memory stay bounded either way.
//!
//! [`CodecWorker::stop`] closes the input and joins the thread (on the blocking pool, not on
//! the reactor), so once it returns the thread, its codec instances and its buffers are gone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use codecs::h264::{
    H264Error, RenditionSpec, VideoInput, VideoOutput, VideoTranscoder, VideoTranscoderStats,
};

/// Most source frames waiting for the codec thread: a whole GOP of 60 fps video at a 4 s
/// keyframe interval, so that the burst a new run starts with (the source's saved GOP) fits.
pub const QUEUE_FRAMES: usize = 256;
/// Most source bytes waiting for it (a 4 s GOP at 16 Mbit/s).
pub const QUEUE_BYTES: usize = 8 << 20;
/// Most encoded frames waiting for the async side before the thread waits.
const OUTPUT_FRAMES: usize = 8;

/// What the async side sends the codec thread.
enum Job {
    /// The source's AVCDecoderConfigurationRecord (a new one may change the size).
    Config(Vec<u8>),
    Frame {
        data: Vec<u8>,
        pts_ms: i64,
        keyframe: bool,
    },
}

impl Job {
    fn bytes(&self) -> usize {
        match self {
            Job::Config(c) => c.len(),
            Job::Frame { data, .. } => data.len(),
        }
    }
}

/// What comes back.
#[derive(Debug)]
pub enum Output {
    Video(VideoOutput),
    /// The codec refused something.
    Error {
        message: String,
        kind: ErrorKind,
    },
}

/// How bad an [`Output::Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: the transcoder resumes at the next keyframe.
    Input,
    /// The source's format cannot be decoded (10-bit, 4:2:2, too large): nothing comes out
    /// until the source sends another configuration.
    Unusable,
    /// The codec cannot go on (it could not start, or the encoder failed): the run ends and is
    /// retried.
    Fatal,
}

impl ErrorKind {
    fn of(e: &H264Error) -> ErrorKind {
        match e {
            H264Error::Unsupported(_) | H264Error::TooLarge { .. } => ErrorKind::Unusable,
            _ if e.is_recoverable() => ErrorKind::Input,
            _ => ErrorKind::Fatal,
        }
    }
}

/// What [`CodecWorker::offer_frame`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// Dropped: the queue was full, or an earlier frame of this GOP was dropped.
    Dropped,
}

/// Counters shared with the thread.
#[derive(Default)]
pub struct Shared {
    queued_frames: AtomicUsize,
    queued_bytes: AtomicUsize,
    /// CPU time the codec thread has used, in nanoseconds (its own clock, not wall time).
    cpu_ns: AtomicU64,
    stats: Mutex<VideoTranscoderStats>,
}

impl Shared {
    pub fn queued(&self) -> (usize, usize) {
        (
            self.queued_frames.load(Ordering::Relaxed),
            self.queued_bytes.load(Ordering::Relaxed),
        )
    }

    pub fn cpu_ns(&self) -> u64 {
        self.cpu_ns.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> VideoTranscoderStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which source frames go to the codec thread: none before the first keyframe, and after a
/// frame is lost (no room in the queue) none until the next keyframe, because the decoder
/// cannot decode frames whose references it never saw.
#[derive(Debug)]
struct Admission {
    skipping: bool,
}

impl Default for Admission {
    fn default() -> Self {
        Admission { skipping: true }
    }
}

impl Admission {
    /// Whether to queue a frame; `room`: the queue has room for it.
    fn admit(&mut self, keyframe: bool, room: bool) -> bool {
        if self.skipping && !keyframe {
            return false;
        }
        self.skipping = !room;
        room
    }

    /// A frame (or the configuration) that was admitted could not be queued after all.
    fn lost(&mut self) {
        self.skipping = true;
    }
}

/// The async side's end of one codec thread.
pub struct CodecWorker {
    jobs: Option<SyncSender<Job>>,
    output: tokio::sync::mpsc::Receiver<Output>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    admission: Admission,
    /// A decoder configuration (`Job::Config`) that found the queue full: sent ahead of the
    /// next keyframe.
    pending_config: Option<Job>,
    dropped: u64,
}

impl CodecWorker {
    /// Starts the thread (named `rendition:<name>`, so it can be seen in `top -H`).
    pub fn spawn(name: &str, spec: RenditionSpec) -> std::io::Result<CodecWorker> {
        let (jobs, rx) = sync_channel(QUEUE_FRAMES);
        let (tx, output) = tokio::sync::mpsc::channel(OUTPUT_FRAMES);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name(name))
            .spawn(move || run(spec, rx, tx, &thread_shared))?;
        Ok(CodecWorker {
            jobs: Some(jobs),
            output,
            shared,
            thread: Some(thread),
            admission: Admission::default(),
            pending_config: None,
            dropped: 0,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Source frames dropped because the thread fell behind (or before the first keyframe).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands the source's decoder configuration to the thread. Never dropped: it is small and
    /// the frames after it cannot be decoded without it.
    pub fn offer_config(&mut self, avcc_record: Vec<u8>) {
        self.pending_config = None;
        if let Err(job) = self.send(Job::Config(avcc_record)) {
            // The queue is full of frames: they will be dropped up to a keyframe anyway, and
            // the configuration must not be lost. It goes ahead of that keyframe.
            self.pending_config = Some(job);
            self.admission.lost();
        }
    }

    /// Offers one source access unit (AVCC NAL units). Never waits.
    pub fn offer_frame(&mut self, data: Vec<u8>, pts_ms: i64, keyframe: bool) -> Offered {
        let (frames, bytes) = self.shared.queued();
        let room = frames < QUEUE_FRAMES && bytes + data.len() <= QUEUE_BYTES;
        if !self.admission.admit(keyframe, room) {
            self.dropped += 1;
            return Offered::Dropped;
        }
        if let Some(job) = self.pending_config.take() {
            if let Err(job) = self.send(job) {
                self.pending_config = Some(job);
                self.admission.lost();
                self.dropped += 1;
                return Offered::Dropped;
            }
        }
        let job = Job::Frame {
            data,
            pts_ms,
            keyframe,
        };
        match self.send(job) {
            Ok(()) => Offered::Queued,
            Err(_) => {
                self.admission.lost();
                self.dropped += 1;
                Offered::Dropped
            }
        }
    }

    /// Queues a job, or gives it back if the queue is full or the thread has ended.
    fn send(&mut self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        let bytes = job.bytes();
        // Counted before the send so the thread never sees the counters go below zero.
        self.shared.queued_frames.fetch_add(1, Ordering::Relaxed);
        self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.queued_frames.fetch_sub(1, Ordering::Relaxed);
                self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Err(job)
            }
        }
    }

    /// The next output; `None` once the thread has ended.
    pub async fn recv(&mut self) -> Option<Output> {
        self.output.recv().await
    }

    /// Closes the input, lets the thread finish the frame it is on, and joins it.
    pub async fn stop(mut self) {
        self.jobs = None;
        // The thread may be waiting to hand over output: closing the receiver releases it.
        self.output.close();
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || {
                let joined = thread.join();
                return_freed_memory();
                joined
            })
            .await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("rendition codec thread panicked");
            }
        }
    }
}

impl Drop for CodecWorker {
    fn drop(&mut self) {
        // Without `stop` (a task aborted at shutdown) the thread still ends on its own: its
        // input channel is closed here, and its output channel with the receiver.
        self.jobs = None;
    }
}

/// Linux limits thread names to 15 bytes; the prefix says what the thread is.
fn thread_name(stream: &str) -> String {
    let mut name = format!("rend:{stream}");
    while name.len() > 15 {
        name.pop();
    }
    name
}

fn run(
    spec: RenditionSpec,
    jobs: Receiver<Job>,
    output: tokio::sync::mpsc::Sender<Output>,
    shared: &Shared,
) {
    let mut transcoder = match VideoTranscoder::new(spec) {
        Ok(t) => t,
        Err(e) => {
            let _ = output.blocking_send(Output::Error {
                message: e.to_string(),
                kind: ErrorKind::Fatal,
            });
            return;
        }
    };
    while let Ok(job) = jobs.recv() {
        shared.queued_frames.fetch_sub(1, Ordering::Relaxed);
        shared
            .queued_bytes
            .fetch_sub(job.bytes(), Ordering::Relaxed);
        let result = match job {
            Job::Config(record) => transcoder.set_config(&record).map(|()| None),
            Job::Frame {
                data,
                pts_ms,
                keyframe,
            } => transcoder.push(VideoInput {
                data: &data,
                pts_ms,
                keyframe,
            }),
        };
        let out = match result {
            Ok(Some(video)) => Some(Output::Video(video)),
            Ok(None) => None,
            Err(e) => Some(Output::Error {
                message: e.to_string(),
                kind: ErrorKind::of(&e),
            }),
        };
        *shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = transcoder.stats();
        shared.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        if let Some(out) = out {
            if output.blocking_send(out).is_err() {
                return;
            }
        }
    }
}

/// Gives the memory a stopped run freed back to the system. The codec thread allocated its
/// frames (tens of MB at 1080p) in a malloc arena of its own; glibc keeps freed memory in its
/// arenas, so without this an idle server would keep the RSS of its busiest past run (the
/// start/stop soak saw 14 MB become 47 MB over the first three runs, then stay there).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks and releases free
    // pages; it reads or writes no memory of ours and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time of the calling thread in nanoseconds (0 if the clock cannot be read).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock every Linux kernel since 2.6.12 provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_starts_at_a_keyframe_and_resumes_at_the_next_after_a_loss() {
        let mut a = Admission::default();
        assert!(!a.admit(false, true), "nothing before the first keyframe");
        assert!(a.admit(true, true));
        assert!(a.admit(false, true));
        assert!(!a.admit(false, false), "no room: dropped");
        assert!(!a.admit(false, true), "the rest of the GOP is undecodable");
        assert!(
            !a.admit(true, false),
            "a keyframe without room is dropped too"
        );
        assert!(!a.admit(false, true));
        assert!(a.admit(true, true), "resumes at a keyframe with room");
        assert!(a.admit(false, true));
        a.lost();
        assert!(!a.admit(false, true));
        assert!(a.admit(true, true));
    }

    #[test]
    fn codec_errors_are_sorted_by_what_the_rendition_can_do_about_them() {
        let too_large = H264Error::TooLarge {
            width: 8192,
            height: 4320,
            max_width: 4096,
            max_height: 2304,
        };
        assert_eq!(ErrorKind::of(&too_large), ErrorKind::Unusable);
        let ten_bit = H264Error::Unsupported("10-bit".into());
        assert_eq!(ErrorKind::of(&ten_bit), ErrorKind::Unusable);
        assert_eq!(
            ErrorKind::of(&H264Error::Malformed("length")),
            ErrorKind::Input
        );
        assert_eq!(
            ErrorKind::of(&H264Error::Decode("x".into())),
            ErrorKind::Input
        );
        assert_eq!(
            ErrorKind::of(&H264Error::Encode("x".into())),
            ErrorKind::Fatal
        );
    }

    #[test]
    fn thread_names_fit_linux_limit() {
        assert_eq!(thread_name("door"), "rend:door");
        assert_eq!(thread_name("door_360p_backyard").len(), 15);
    }

    #[test]
    fn thread_cpu_clock_advances_with_work() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > before);
    }
}
