//! The typed RTMP server session: one per connection, sans-IO.
//!
//! Contract:
//! 1. Feed every byte read from the socket, in order, to [`ServerSession::handle_input`].
//! 2. Then call [`ServerSession::poll_event`] until it returns `None`, answering each
//!    [`SessionEvent::PublishRequested`] with [`ServerSession::accept_publish`] or
//!    [`ServerSession::reject_publish`] and each [`SessionEvent::PlayRequested`] with
//!    [`ServerSession::accept_play`] or [`ServerSession::reject_play`] (a rejected session is
//!    closed: send the pending output, then close the socket).
//! 3. Write what [`ServerSession::io_slices`] exposes and report the count with
//!    [`ServerSession::advance`]; bound the backlog with [`ServerSession::pending_bytes`].
//!
//! After `handle_input` returns an error the session is closed: every later call to it returns
//! [`RtmpError::Closed`]. Whatever is pending may still be written (e.g. a rejection status).
//!
//! States are typed: `Handshaking` → `AwaitingConnect` → `Connected { app, role }` where the
//! role is idle, publishing or playing one stream. A publishing connection that sends `play`
//! (or the reverse) gets an error; `deleteStream`/`closeStream`/`FCUnpublish` return it to idle.

pub use crate::media::MediaKind;
use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tracing::{debug, trace};

use super::amf;
use super::chunk_reader::{ChunkReader, RawMessage, ReaderLimits};
use super::chunk_writer::{ChunkWriter, MessageHeader, Payload};
use super::RtmpError;
use crate::pages::Message;

/// Handshake length: C0 (1) + C1 (1536) + C2 (1536).
const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

// Chunk stream ids we send on, as nginx-rtmp does.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_STREAM: u32 = 5;
const CSID_AUDIO: u32 = 6;
const CSID_VIDEO: u32 = 7;

const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_ABORT: u8 = 2;
const TYPE_ACK: u8 = 3;
const TYPE_USER_CONTROL: u8 = 4;
const TYPE_WINDOW_ACK_SIZE: u8 = 5;
const TYPE_SET_PEER_BANDWIDTH: u8 = 6;
const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
const TYPE_DATA_AMF3: u8 = 15;
const TYPE_COMMAND_AMF3: u8 = 17;
const TYPE_DATA: u8 = 18;
const TYPE_COMMAND: u8 = 20;

/// Most streams one connection may create (createStream).
const MAX_CREATED_STREAMS: u32 = 8;

/// Settings of a session. Every default is documented next to its field.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our outgoing chunk size, announced after connect. Default 4096 (as SRS; fewer headers).
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to the peer. Default 2_500_000 (as nginx-rtmp).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth value (dynamic limit). Default 2_500_000.
    pub peer_bandwidth: u32,
    /// Limits on what the peer may make us buffer; see [`ReaderLimits`].
    pub limits: ReaderLimits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            limits: ReaderLimits::default(),
        }
    }
}

/// What the session reports to its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// `connect` succeeded (answered already).
    Connected { app: String },
    /// `publish`: answer with `accept_publish` or `reject_publish`. The stream name is as sent
    /// (including any `?query`).
    PublishRequested {
        app: String,
        stream_name: String,
        stream_id: u32,
    },
    /// `FCUnpublish`, `deleteStream` or `closeStream` of an accepted or requested publish.
    PublishStopped {
        app: String,
        stream_name: String,
        stream_id: u32,
    },
    /// `play`: answer with `accept_play` or `reject_play`.
    PlayRequested {
        app: String,
        stream_name: String,
        stream_id: u32,
    },
    /// `deleteStream` or `closeStream` of a play.
    PlayStopped {
        app: String,
        stream_name: String,
        stream_id: u32,
    },
    /// Stream metadata from the publisher, as the AMF0 data body a player must receive:
    /// `"onMetaData", {..}` (an `@setDataFrame` prefix is removed; property order is kept).
    Metadata { payload: Bytes },
    /// An audio/video message from the publisher: the FLV tag body, with an absolute timestamp
    /// in ms (wraps at u32, see the module docs).
    Media {
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// A player paused (`paused: true`) or resumed; already answered with a Notify status.
    Paused { stream_id: u32, paused: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamRef {
    stream_id: u32,
    name: String,
}

#[derive(Debug)]
enum Role {
    Idle,
    PublishRequested(StreamRef),
    Publishing(StreamRef),
    PlayRequested(StreamRef),
    Playing { stream: StreamRef, paused: bool },
}

enum State {
    Handshaking {
        handshake: Box<Handshake>,
        remaining: usize,
    },
    AwaitingConnect,
    Connected {
        app: String,
        role: Role,
    },
    Closed,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Handshaking { remaining, .. } => f
                .debug_struct("Handshaking")
                .field("remaining", remaining)
                .finish(),
            State::AwaitingConnect => f.write_str("AwaitingConnect"),
            State::Connected { app, role } => f
                .debug_struct("Connected")
                .field("app", app)
                .field("role", role)
                .finish(),
            State::Closed => f.write_str("Closed"),
        }
    }
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Handshaking { .. } => "handshaking",
            State::AwaitingConnect => "awaiting connect",
            State::Connected {
                role: Role::Idle, ..
            } => "connected",
            State::Connected {
                role: Role::PublishRequested(_),
                ..
            } => "requesting to publish",
            State::Connected {
                role: Role::Publishing(_),
                ..
            } => "publishing",
            State::Connected {
                role: Role::PlayRequested(_),
                ..
            } => "requesting to play",
            State::Connected {
                role: Role::Playing { .. },
                ..
            } => "playing",
            State::Closed => "closed",
        }
    }
}

/// A parsed command message.
struct Command {
    name: String,
    transaction_id: f64,
    args: Vec<Amf0Value>,
    stream_id: u32,
}

/// One RTMP server connection. See the module docs for the contract.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    state: State,
    reader: ChunkReader,
    writer: ChunkWriter,
    events: VecDeque<SessionEvent>,
    bytes_received: u64,
    acked_at: u64,
    peer_window: Option<u32>,
    created_streams: u32,
}

impl ServerSession {
    pub fn new(config: SessionConfig) -> ServerSession {
        ServerSession {
            reader: ChunkReader::new(config.limits),
            config,
            state: State::Handshaking {
                handshake: Box::new(Handshake::new(PeerType::Server)),
                remaining: HANDSHAKE_LEN,
            },
            writer: ChunkWriter::new(),
            events: VecDeque::new(),
            bytes_received: 0,
            acked_at: 0,
            peer_window: None,
            created_streams: 0,
        }
    }

    /// Processes bytes from the peer: handshake first, then chunks. Events queue for
    /// [`ServerSession::poll_event`]; replies queue in the output.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(), RtmpError> {
        if matches!(self.state, State::Closed) {
            return Err(RtmpError::Closed);
        }
        self.bytes_received += input.len() as u64;
        let result = self.handle_input_inner(input);
        if result.is_err() {
            self.state = State::Closed;
        }
        result
    }

    fn handle_input_inner(&mut self, mut input: &[u8]) -> Result<(), RtmpError> {
        if let State::Handshaking {
            handshake,
            remaining,
        } = &mut self.state
        {
            // Feed exactly the handshake's bytes, so rml's handshake buffers at most 3073 bytes.
            let take = (*remaining).min(input.len());
            let result = handshake
                .process_bytes(&input[..take])
                .map_err(RtmpError::Handshake)?;
            *remaining -= take;
            input = &input[take..];
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.writer.queue_raw(&response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    debug_assert!(remaining_bytes.is_empty());
                    self.writer.queue_raw(&response_bytes);
                    self.state = State::AwaitingConnect;
                    trace!("rtmp handshake complete");
                }
            }
        }
        while let Some(msg) = self.reader.read(&mut input)? {
            self.handle_message(msg)?;
            if matches!(self.state, State::Closed) {
                return Ok(());
            }
        }
        self.maybe_acknowledge()
    }

    /// The next event, in arrival order.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Appends slices of all pending output for `write_vectored`. See [`ChunkWriter::io_slices`].
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        self.writer.io_slices(out)
    }

    /// Like [`ServerSession::io_slices`], at most `max` slices (writev takes at most IOV_MAX).
    pub fn io_slices_max<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        self.writer.io_slices_max(out, max)
    }

    /// Marks `n` output bytes as written. See [`ChunkWriter::advance`].
    pub fn advance(&mut self, n: usize) {
        self.writer.advance(n)
    }

    /// Asks for the output state's memory ahead of use (see `crate::prefetch`).
    pub fn prefetch(&self) {
        self.writer.prefetch();
    }

    /// Output bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.writer.pending_bytes()
    }

    /// The application name once connected.
    pub fn app(&self) -> Option<&str> {
        match &self.state {
            State::Connected { app, .. } => Some(app),
            _ => None,
        }
    }

    /// Whether the session failed or was rejected (write what is pending, then close).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Accepts a requested publish: sends NetStream.Publish.Start.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), RtmpError> {
        let stream = match &mut self.state {
            State::Connected { role, .. } => match std::mem::replace(role, Role::Idle) {
                Role::PublishRequested(s) if s.stream_id == stream_id => {
                    *role = Role::Publishing(s.clone());
                    s
                }
                other => {
                    *role = other;
                    return Err(self.state_error(format!("accept_publish({stream_id})")));
                }
            },
            _ => return Err(self.state_error(format!("accept_publish({stream_id})"))),
        };
        self.user_control(0, stream_id)?;
        let desc = format!("{} is now published.", stream.name);
        self.on_status(stream_id, "status", "NetStream.Publish.Start", &desc)
    }

    /// Rejects a requested publish: sends NetStream.Publish.BadName with `reason` and closes
    /// the session (write the pending output, then close the socket).
    pub fn reject_publish(&mut self, stream_id: u32, reason: &str) -> Result<(), RtmpError> {
        match &self.state {
            State::Connected {
                role: Role::PublishRequested(s),
                ..
            } if s.stream_id == stream_id => {}
            _ => return Err(self.state_error(format!("reject_publish({stream_id})"))),
        }
        self.on_status(stream_id, "error", "NetStream.Publish.BadName", reason)?;
        self.state = State::Closed;
        Ok(())
    }

    /// Accepts a requested play: sends StreamBegin, NetStream.Play.Reset, NetStream.Play.Start
    /// and `|RtmpSampleAccess`. Then send metadata, sequence headers and media.
    pub fn accept_play(&mut self, stream_id: u32) -> Result<(), RtmpError> {
        let stream = match &mut self.state {
            State::Connected { role, .. } => match std::mem::replace(role, Role::Idle) {
                Role::PlayRequested(s) if s.stream_id == stream_id => {
                    *role = Role::Playing {
                        stream: s.clone(),
                        paused: false,
                    };
                    s
                }
                other => {
                    *role = other;
                    return Err(self.state_error(format!("accept_play({stream_id})")));
                }
            },
            _ => return Err(self.state_error(format!("accept_play({stream_id})"))),
        };
        self.user_control(0, stream_id)?;
        let name = &stream.name;
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            &format!("Playing and resetting {name}."),
        )?;
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        )?;
        let access = amf::encode(&[
            Amf0Value::Utf8String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ])
        .map_err(|what| RtmpError::Output { what })?;
        self.send(CSID_STREAM, TYPE_DATA, stream_id, &access)
    }

    /// Rejects a requested play: sends NetStream.Play.StreamNotFound with `reason` and closes
    /// the session (write the pending output, then close the socket).
    pub fn reject_play(&mut self, stream_id: u32, reason: &str) -> Result<(), RtmpError> {
        match &self.state {
            State::Connected {
                role: Role::PlayRequested(s),
                ..
            } if s.stream_id == stream_id => {}
            _ => return Err(self.state_error(format!("reject_play({stream_id})"))),
        }
        self.on_status(stream_id, "error", "NetStream.Play.StreamNotFound", reason)?;
        self.state = State::Closed;
        Ok(())
    }

    /// Tells a player its stream's publisher left: StreamEOF and NetStream.Play.UnpublishNotify.
    /// The player stays connected (a new publisher's media may follow).
    pub fn send_unpublish_notify(&mut self, stream_id: u32) -> Result<(), RtmpError> {
        self.check_playing(stream_id, "send_unpublish_notify")?;
        self.user_control(1, stream_id)?;
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "The stream was unpublished.",
        )
    }

    /// Queues a media message (FLV tag body) to an accepted player. The payload is referenced,
    /// not copied, and the handle is kept until its bytes are written (pass the one you have:
    /// a clone is an atomic operation on a line every player touches). Allowed while paused:
    /// the caller decides what to send after a pause event.
    pub fn send_media(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Message,
    ) -> Result<(), RtmpError> {
        self.check_playing(stream_id, "send_media")?;
        let (csid, type_id) = match kind {
            MediaKind::Audio => (CSID_AUDIO, TYPE_AUDIO),
            MediaKind::Video => (CSID_VIDEO, TYPE_VIDEO),
            MediaKind::Data => (CSID_STREAM, TYPE_DATA),
        };
        self.writer.queue_message(
            MessageHeader {
                csid,
                timestamp,
                type_id,
                stream_id,
            },
            payload,
        )
    }

    /// Queues metadata (an AMF0 data body `"onMetaData", {..}`, as in
    /// [`SessionEvent::Metadata`]) to an accepted player.
    pub fn send_metadata(&mut self, stream_id: u32, payload: Message) -> Result<(), RtmpError> {
        self.check_playing(stream_id, "send_metadata")?;
        let header = MessageHeader {
            csid: CSID_STREAM,
            timestamp: 0,
            type_id: TYPE_DATA,
            stream_id,
        };
        self.writer.queue_message(header, payload)
    }

    fn check_playing(&self, stream_id: u32, what: &str) -> Result<(), RtmpError> {
        match &self.state {
            State::Connected {
                role: Role::Playing { stream, .. },
                ..
            } if stream.stream_id == stream_id => Ok(()),
            _ => Err(self.state_error(format!("{what}({stream_id})"))),
        }
    }

    fn state_error(&self, what: String) -> RtmpError {
        RtmpError::State {
            what,
            state: self.state.name(),
        }
    }

    // ---- input ----

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            TYPE_SET_CHUNK_SIZE => {
                let size = be32(&msg.payload, "Set Chunk Size")?;
                self.reader.set_chunk_size(size)?;
                debug!(
                    chunk_size = self.reader.chunk_size(),
                    "rtmp peer chunk size"
                );
            }
            TYPE_ABORT => {
                let csid = be32(&msg.payload, "Abort")?;
                self.reader.abort(csid);
            }
            TYPE_ACK | TYPE_SET_PEER_BANDWIDTH => {}
            TYPE_WINDOW_ACK_SIZE => {
                self.peer_window = Some(be32(&msg.payload, "Window Acknowledgement Size")?);
            }
            TYPE_USER_CONTROL => {
                let p = &msg.payload;
                if p.len() < 2 {
                    return Err(RtmpError::message(
                        "User Control",
                        format!("{} bytes", p.len()),
                    ));
                }
                let event = u16::from_be_bytes([p[0], p[1]]);
                if event == 6 {
                    // PingRequest → PingResponse echoing the timestamp.
                    let ts = be32(&p[2..], "User Control PingRequest")?;
                    let mut b = [0u8; 6];
                    b[..2].copy_from_slice(&7u16.to_be_bytes());
                    b[2..].copy_from_slice(&ts.to_be_bytes());
                    self.send(CSID_CONTROL, TYPE_USER_CONTROL, 0, &b)?;
                }
            }
            TYPE_AUDIO | TYPE_VIDEO => {
                let kind = if msg.type_id == TYPE_AUDIO {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                match &self.state {
                    State::Connected {
                        role: Role::PublishRequested(s) | Role::Publishing(s),
                        ..
                    } if s.stream_id == msg.stream_id => {
                        self.events.push_back(SessionEvent::Media {
                            kind,
                            timestamp: msg.timestamp,
                            payload: msg.payload,
                        });
                    }
                    _ => {
                        return Err(self
                            .state_error(format!("{kind:?} message on stream {}", msg.stream_id)))
                    }
                }
            }
            TYPE_DATA | TYPE_DATA_AMF3 => self.handle_data(msg)?,
            TYPE_COMMAND | TYPE_COMMAND_AMF3 => {
                let cmd = parse_command(&msg)?;
                self.handle_command(cmd)?;
            }
            other => trace!(type_id = other, "rtmp message of unknown type ignored"),
        }
        Ok(())
    }

    fn handle_data(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        let mut body = msg.payload;
        if msg.type_id == TYPE_DATA_AMF3 && body.first() == Some(&0) {
            body = body.slice(1..);
        }
        let values = amf::decode(&body).map_err(|what| RtmpError::message("data", what))?;
        let name = match values.first() {
            Some(Amf0Value::Utf8String(s)) => s.as_str(),
            _ => return Err(RtmpError::message("data", "first value is not a string")),
        };
        let payload = match name {
            "@setDataFrame" => {
                let skip = amf::first_string_len(&body).expect("decoded a string first");
                if !matches!(values.get(1), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
                    debug!(name = ?values.get(1), "rtmp @setDataFrame without onMetaData ignored");
                    return Ok(());
                }
                body.slice(skip..)
            }
            "onMetaData" => body,
            other => {
                debug!(name = other, "rtmp data message ignored");
                return Ok(());
            }
        };
        match &self.state {
            State::Connected {
                role: Role::PublishRequested(s) | Role::Publishing(s),
                ..
            } if s.stream_id == msg.stream_id => {
                self.events.push_back(SessionEvent::Metadata { payload });
                Ok(())
            }
            _ => Err(self.state_error(format!("metadata on stream {}", msg.stream_id))),
        }
    }

    fn handle_command(&mut self, cmd: Command) -> Result<(), RtmpError> {
        trace!(command = %cmd.name, transaction = cmd.transaction_id, stream_id = cmd.stream_id, "rtmp command");
        if cmd.name == "connect" {
            return self.on_connect(cmd);
        }
        let created_streams = self.created_streams;
        let State::Connected { app, role } = &mut self.state else {
            return Err(self.state_error(format!("command {:?}", cmd.name)));
        };
        let app = app.clone();
        match cmd.name.as_str() {
            "releaseStream" | "FCSubscribe" => {
                self.reply_result(cmd.transaction_id, Amf0Value::Undefined)
            }
            "FCPublish" => {
                let name = string_arg(&cmd, 0)?;
                let info = object(&[("code", "NetStream.Publish.Start"), ("description", &name)]);
                self.command(0, "onFCPublish", 0.0, vec![Amf0Value::Null, info])
            }
            "createStream" => {
                if self.created_streams >= MAX_CREATED_STREAMS {
                    return Err(RtmpError::limit(
                        CSID_COMMAND,
                        format!("more than {MAX_CREATED_STREAMS} createStream"),
                    ));
                }
                self.created_streams += 1;
                let id = self.created_streams;
                self.reply_result(cmd.transaction_id, Amf0Value::Number(id as f64))
            }
            "publish" => {
                let name = string_arg(&cmd, 0)?;
                check_stream_id(&cmd, created_streams)?;
                if !matches!(role, Role::Idle) {
                    return Err(self.state_error("publish".into()));
                }
                let stream_id = cmd.stream_id;
                *role = Role::PublishRequested(StreamRef {
                    stream_id,
                    name: name.clone(),
                });
                debug!(app = %app, stream = %name, stream_id, "rtmp publish requested");
                self.events.push_back(SessionEvent::PublishRequested {
                    app,
                    stream_name: name,
                    stream_id,
                });
                Ok(())
            }
            "play" => {
                let name = string_arg(&cmd, 0)?;
                check_stream_id(&cmd, created_streams)?;
                if !matches!(role, Role::Idle) {
                    return Err(self.state_error("play".into()));
                }
                let stream_id = cmd.stream_id;
                *role = Role::PlayRequested(StreamRef {
                    stream_id,
                    name: name.clone(),
                });
                debug!(app = %app, stream = %name, stream_id, "rtmp play requested");
                self.events.push_back(SessionEvent::PlayRequested {
                    app,
                    stream_name: name,
                    stream_id,
                });
                Ok(())
            }
            "FCUnpublish" => {
                if matches!(role, Role::PublishRequested(_) | Role::Publishing(_)) {
                    self.stop_role(app);
                }
                Ok(())
            }
            "deleteStream" | "closeStream" => {
                let stream_id = if cmd.name == "deleteStream" {
                    match cmd.args.get(1) {
                        Some(Amf0Value::Number(n)) => *n as u32,
                        _ => return Err(RtmpError::message("deleteStream", "no stream id")),
                    }
                } else {
                    cmd.stream_id
                };
                let active = match role {
                    Role::Idle => None,
                    Role::PublishRequested(s) | Role::Publishing(s) | Role::PlayRequested(s) => {
                        Some(s.stream_id)
                    }
                    Role::Playing { stream, .. } => Some(stream.stream_id),
                };
                if active == Some(stream_id) {
                    self.stop_role(app);
                }
                Ok(())
            }
            "getStreamLength" => self.reply_result(cmd.transaction_id, Amf0Value::Number(0.0)),
            "pause" => {
                let Role::Playing { stream, paused } = role else {
                    return Err(self.state_error("pause".into()));
                };
                let pause = match cmd.args.get(1) {
                    Some(Amf0Value::Boolean(b)) => *b,
                    _ => return Err(RtmpError::message("pause", "no pause flag")),
                };
                *paused = pause;
                let stream_id = stream.stream_id;
                let (code, desc) = if pause {
                    ("NetStream.Pause.Notify", "Paused live stream.")
                } else {
                    ("NetStream.Unpause.Notify", "Unpaused live stream.")
                };
                self.events.push_back(SessionEvent::Paused {
                    stream_id,
                    paused: pause,
                });
                self.on_status(stream_id, "status", code, desc)
            }
            other => {
                debug!(command = other, "rtmp command ignored");
                Ok(())
            }
        }
    }

    /// Ends the current publish/play role with its stop event.
    fn stop_role(&mut self, app: String) {
        let State::Connected { role, .. } = &mut self.state else {
            return;
        };
        let event = match std::mem::replace(role, Role::Idle) {
            Role::Idle => return,
            Role::PublishRequested(s) | Role::Publishing(s) => SessionEvent::PublishStopped {
                app,
                stream_name: s.name,
                stream_id: s.stream_id,
            },
            Role::PlayRequested(s) | Role::Playing { stream: s, .. } => SessionEvent::PlayStopped {
                app,
                stream_name: s.name,
                stream_id: s.stream_id,
            },
        };
        self.events.push_back(event);
    }

    fn on_connect(&mut self, cmd: Command) -> Result<(), RtmpError> {
        if !matches!(self.state, State::AwaitingConnect) {
            return Err(self.state_error("connect".into()));
        }
        let props = match cmd.args.first() {
            Some(Amf0Value::Object(p)) => p,
            _ => return Err(RtmpError::message("connect", "no command object")),
        };
        let app = match props.get("app") {
            Some(Amf0Value::Utf8String(s)) => s.trim_end_matches('/').to_string(),
            _ => return Err(RtmpError::message("connect", "no app name")),
        };
        let object_encoding = match props.get("objectEncoding") {
            Some(Amf0Value::Number(n)) => *n,
            _ => 0.0,
        };
        self.send(
            CSID_CONTROL,
            TYPE_WINDOW_ACK_SIZE,
            0,
            &self.config.window_ack_size.to_be_bytes(),
        )?;
        let mut bw = [2u8; 5]; // limit type 2: dynamic
        bw[..4].copy_from_slice(&self.config.peer_bandwidth.to_be_bytes());
        self.send(CSID_CONTROL, TYPE_SET_PEER_BANDWIDTH, 0, &bw)?;
        let chunk_size = self.config.chunk_size.clamp(128, 0xFF_FFFF);
        self.send(
            CSID_CONTROL,
            TYPE_SET_CHUNK_SIZE,
            0,
            &chunk_size.to_be_bytes(),
        )?;
        self.writer.set_chunk_size(chunk_size);
        let mut props = object(&[("fmsVer", "FMS/3,0,1,123")]);
        if let Amf0Value::Object(p) = &mut props {
            p.insert("capabilities".into(), Amf0Value::Number(31.0));
        }
        let mut info = object(&[
            ("level", "status"),
            ("code", "NetConnection.Connect.Success"),
            ("description", "Connection succeeded."),
        ]);
        if let Amf0Value::Object(p) = &mut info {
            p.insert("objectEncoding".into(), Amf0Value::Number(object_encoding));
        }
        self.command(0, "_result", cmd.transaction_id, vec![props, info])?;
        debug!(app = %app, "rtmp connected");
        self.events
            .push_back(SessionEvent::Connected { app: app.clone() });
        self.state = State::Connected {
            app,
            role: Role::Idle,
        };
        Ok(())
    }

    fn maybe_acknowledge(&mut self) -> Result<(), RtmpError> {
        if let Some(window) = self.peer_window {
            if window > 0 && self.bytes_received - self.acked_at >= window as u64 {
                self.acked_at = self.bytes_received;
                // The sequence number is the total received so far, wrapping (as ffmpeg).
                self.send(
                    CSID_CONTROL,
                    TYPE_ACK,
                    0,
                    &(self.bytes_received as u32).to_be_bytes(),
                )?;
            }
        }
        Ok(())
    }

    // ---- output helpers ----

    fn send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), RtmpError> {
        self.writer.queue(
            MessageHeader {
                csid,
                timestamp: 0,
                type_id,
                stream_id,
            },
            Payload::Inline(payload),
        )
    }

    fn user_control(&mut self, event: u16, stream_id: u32) -> Result<(), RtmpError> {
        let mut b = [0u8; 6];
        b[..2].copy_from_slice(&event.to_be_bytes());
        b[2..].copy_from_slice(&stream_id.to_be_bytes());
        self.send(CSID_CONTROL, TYPE_USER_CONTROL, 0, &b)
    }

    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        mut args: Vec<Amf0Value>,
    ) -> Result<(), RtmpError> {
        args.insert(0, Amf0Value::Number(transaction_id));
        args.insert(0, Amf0Value::Utf8String(name.into()));
        let body = amf::encode(&args).map_err(|what| RtmpError::Output {
            what: format!("{name}: {what}"),
        })?;
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_STREAM
        };
        self.send(csid, TYPE_COMMAND, stream_id, &body)
    }

    fn reply_result(&mut self, transaction_id: f64, value: Amf0Value) -> Result<(), RtmpError> {
        self.command(0, "_result", transaction_id, vec![Amf0Value::Null, value])
    }

    fn on_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        let info = object(&[
            ("level", level),
            ("code", code),
            ("description", description),
        ]);
        self.command(stream_id, "onStatus", 0.0, vec![Amf0Value::Null, info])
    }
}

fn object(pairs: &[(&str, &str)]) -> Amf0Value {
    Amf0Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Amf0Value::Utf8String(v.to_string())))
            .collect(),
    )
}

fn check_stream_id(cmd: &Command, created_streams: u32) -> Result<(), RtmpError> {
    if cmd.stream_id == 0 || cmd.stream_id > created_streams {
        return Err(RtmpError::message(
            cmd.name.clone(),
            format!("on stream {} which was not created", cmd.stream_id),
        ));
    }
    Ok(())
}

fn be32(p: &[u8], what: &str) -> Result<u32, RtmpError> {
    match p.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(RtmpError::message(
            what,
            format!("{} bytes, expected 4", p.len()),
        )),
    }
}

/// The string argument `i` after the command object.
fn string_arg(cmd: &Command, i: usize) -> Result<String, RtmpError> {
    match cmd.args.get(i + 1) {
        Some(Amf0Value::Utf8String(s)) => Ok(s.clone()),
        _ => Err(RtmpError::message(
            cmd.name.clone(),
            format!("argument {} is not a string", i + 1),
        )),
    }
}

fn parse_command(msg: &RawMessage) -> Result<Command, RtmpError> {
    let mut body = &msg.payload[..];
    if msg.type_id == TYPE_COMMAND_AMF3 && body.first() == Some(&0) {
        body = &body[1..];
    }
    let mut values = amf::decode(body)
        .map_err(|what| RtmpError::message("command", what))?
        .into_iter();
    let name = match values.next() {
        Some(Amf0Value::Utf8String(s)) => s,
        _ => return Err(RtmpError::message("command", "no command name")),
    };
    let transaction_id = match values.next() {
        Some(Amf0Value::Number(n)) => n,
        _ => return Err(RtmpError::message(name, "no transaction id")),
    };
    Ok(Command {
        name,
        transaction_id,
        args: values.collect(),
        stream_id: msg.stream_id,
    })
}
