//! The RTMP server: a sans-IO protocol core (bytes in, events and bytes out; no sockets, no
//! tokio, no clocks) and one thin socket layer, [`server`], which feeds
//! [`ServerSession::handle_input`],
//! drains [`ServerSession::poll_event`], answers publish/play requests, and writes what
//! [`ServerSession::io_slices`] exposes with `write_vectored`, then calls
//! [`ServerSession::advance`].
//!
//! What lives here:
//! - [`chunk_writer`]: our chunk serializer. Header bytes go into one per-connection buffer;
//!   media payloads are referenced ([`crate::pages::Message`] clones), never copied per player.
//! - [`chunk_reader`]: our chunk deserializer, with limits checked before any allocation
//!   (rml_rtmp's `ChunkDeserializer` panics on interleaved chunk streams and reserves whole
//!   message lengths up front; see `chunk_reader`'s docs).
//! - `amf`: AMF0 helpers over `rml_amf0` with a nesting-depth check (rml_amf0 recurses without
//!   bound, so a deep object would overflow the stack).
//! - [`session`]: the typed server session (handshake via `rml_rtmp::handshake`, commands,
//!   acknowledgements, publish/play lifecycle).
//!
//! - [`server`]: the tokio glue: listener, one task per connection, connecting sessions to
//!   the stream hub (publishers' payloads into pages, players' output as writev of pages).
//!
//! What does not live here: stream hubs, page pools, FLV parsing.
//!
//! Timestamps are RTMP's: u32 milliseconds that wrap around after ~49.7 days. Input timestamps
//! (absolute, delta and extended) are resolved to absolute u32 values with wrapping arithmetic;
//! a wrap is legal and delivered as is (the value drops back near zero). Callers that need a
//! monotonic clock extend them (e.g. by treating a backwards jump of more than 2^31 ms as a wrap).

mod amf;
pub mod chunk_reader;
pub mod chunk_writer;
pub mod flush_pass;
pub mod server;
pub mod session;

#[cfg(test)]
mod tests;

pub use chunk_reader::{ChunkReader, RawMessage, ReaderLimits};
pub use chunk_writer::{ChunkWriter, MessageHeader, Payload};
pub use session::{MediaKind, ServerSession, SessionConfig, SessionEvent};

/// The largest message length the 24-bit RTMP length field can express.
pub const MAX_RTMP_MESSAGE_LEN: usize = 0xFF_FFFF;

/// An error on one RTMP connection. The connection should be closed; other connections are
/// unaffected. Match on the predicates, never on the message text.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The handshake bytes were invalid.
    #[error("RTMP handshake failed: {0}")]
    Handshake(#[source] rml_rtmp::handshake::HandshakeError),
    /// A chunk header or chunk sequence was invalid.
    #[error("malformed chunk on chunk stream {csid}: {what}")]
    Chunk { csid: u32, what: String },
    /// A peer-declared size exceeded a configured limit (checked before any allocation).
    #[error("limit exceeded on chunk stream {csid}: {what}")]
    Limit { csid: u32, what: String },
    /// A message (control, command or data) could not be decoded.
    #[error("malformed {message} message: {what}")]
    Message { message: String, what: String },
    /// A command or message that the connection's state does not allow.
    #[error("{what} is not allowed while the connection is {state}")]
    State { what: String, state: &'static str },
    /// An outgoing message could not be queued (too large for RTMP, or an invalid csid).
    #[error("cannot send message: {what}")]
    Output { what: String },
    /// The session already failed or was rejected; no more input is accepted.
    #[error("RTMP session is closed")]
    Closed,
}

impl RtmpError {
    /// The peer sent bytes that are not valid RTMP (handshake, chunks, AMF).
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            RtmpError::Handshake(_) | RtmpError::Chunk { .. } | RtmpError::Message { .. }
        )
    }

    /// The peer exceeded a configured limit (message size, chunk streams, buffered bytes).
    pub fn is_limit(&self) -> bool {
        matches!(self, RtmpError::Limit { .. })
    }

    /// A command arrived (or an API call was made) in a state that does not allow it.
    pub fn is_state(&self) -> bool {
        matches!(self, RtmpError::State { .. })
    }

    /// The session had already been closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, RtmpError::Closed)
    }

    pub(crate) fn chunk(csid: u32, what: impl Into<String>) -> RtmpError {
        RtmpError::Chunk {
            csid,
            what: what.into(),
        }
    }

    pub(crate) fn limit(csid: u32, what: impl Into<String>) -> RtmpError {
        RtmpError::Limit {
            csid,
            what: what.into(),
        }
    }

    pub(crate) fn message(message: impl Into<String>, what: impl Into<String>) -> RtmpError {
        RtmpError::Message {
            message: message.into(),
            what: what.into(),
        }
    }
}
