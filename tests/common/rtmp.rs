//! A small hand-driven RTMP client for the tests no real tool does on purpose: a player that
//! stops reading, a player that records every media message (codec bytes included), and raw
//! bytes after a valid handshake. It uses rml_rtmp's handshake and chunk (de)serializer, and
//! its own few commands (connect, createStream, play), so nothing in it rejects a message the
//! server is allowed to send (a second Play.Start, an UnpublishNotify).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::time::RtmpTimestamp;

/// A TCP connection to the server with short read timeouts (so loops can check deadlines).
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to moment");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A connection that finished the RTMP handshake, with whatever bytes followed it.
pub struct Handshaken {
    pub stream: TcpStream,
    pub leftover: Vec<u8>,
}

/// Connects and completes a client handshake.
pub fn handshake(addr: SocketAddr) -> Handshaken {
    let mut stream = tcp(addr);
    let mut hs = Handshake::new(PeerType::Client);
    let p0p1 = hs.generate_outbound_p0_and_p1().unwrap();
    stream.write_all(&p0p1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    loop {
        assert!(Instant::now() < deadline, "RTMP handshake timed out");
        let n = match stream.read(&mut buf) {
            Ok(0) => panic!("server closed the connection during the handshake"),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => panic!("handshake read: {e}"),
        };
        match hs.process_bytes(&buf[..n]).expect("valid server handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).unwrap();
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).unwrap();
                return Handshaken {
                    stream,
                    leftover: remaining_bytes,
                };
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads and discards until the server closes the connection; the time that took, or `None`
/// if it was still open after `timeout`.
pub fn wait_closed(stream: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64 * 1024];
    while start.elapsed() < timeout {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Some(start.elapsed()), // reset: closed too
        }
    }
    None
}

/// One chunk-stream message as raw chunks: a type-0 header on `csid` (2..=63), then the payload
/// split at `chunk_size` with type-3 continuation headers.
pub fn chunks(csid: u8, type_id: u8, stream_id: u32, payload: &[u8], chunk_size: usize) -> Vec<u8> {
    assert!((2..=63).contains(&csid));
    let mut out = message_header(csid, payload.len() as u32, type_id, stream_id);
    for (i, part) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(part);
    }
    out
}

/// A type-0 chunk header claiming a message of `len` bytes (timestamp 0), without the body.
pub fn message_header(csid: u8, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut out = vec![csid & 0x3F, 0, 0, 0];
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    out
}

/// A media message a [`RawPlayer`] received.
#[derive(Debug, Clone)]
pub struct Media {
    pub at: Instant,
    /// 8 audio, 9 video.
    pub type_id: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

impl Media {
    /// Video codec id (7 = AVC) or audio sound format (10 = AAC, 11 = Speex).
    pub fn codec(&self) -> Option<u8> {
        let b = *self.body.first()?;
        Some(if self.type_id == 9 { b & 0x0F } else { b >> 4 })
    }
}

/// An RTMP client session over a blocking socket.
pub struct Client {
    pub stream: TcpStream,
    de: ChunkDeserializer,
    ser: ChunkSerializer,
    input: Vec<u8>,
    received: u64,
    acked: u64,
    ack_window: Option<u32>,
    /// The message stream `play` was sent on.
    stream_id: u32,
}

/// What a [`Client`] read.
enum Incoming {
    Command { name: String, args: Vec<Amf0Value> },
    Media(Media),
    Other,
}

impl Client {
    /// Handshake and `connect` to the `live` application.
    pub fn connect(addr: SocketAddr) -> Client {
        let h = handshake(addr);
        let mut c = Client {
            stream: h.stream,
            de: ChunkDeserializer::new(),
            ser: ChunkSerializer::new(),
            input: h.leftover,
            received: 0,
            acked: 0,
            ack_window: None,
            stream_id: 0,
        };
        let mut props = HashMap::new();
        props.insert("app".into(), Amf0Value::Utf8String("live".into()));
        props.insert(
            "flashVer".into(),
            Amf0Value::Utf8String("LNX 9,0,124,2".into()),
        );
        props.insert(
            "tcUrl".into(),
            Amf0Value::Utf8String(format!("rtmp://{addr}/live")),
        );
        c.command("connect", 1.0, Amf0Value::Object(props), vec![], 0);
        c.expect_result("connect", Duration::from_secs(5));
        c
    }

    /// Connects and plays `name`; returns once the server said `NetStream.Play.Start`.
    pub fn play(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        c.command("createStream", 2.0, Amf0Value::Null, vec![], 0);
        let args = c.expect_result("createStream", Duration::from_secs(5));
        let sid = match args.first() {
            Some(Amf0Value::Number(n)) => *n as u32,
            other => panic!("createStream _result without a stream id: {other:?}"),
        };
        c.stream_id = sid;
        c.command(
            "play",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String(name.into())],
            sid,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.next(deadline) {
                Some(Incoming::Command { name, args }) if name == "onStatus" => {
                    let code = status_code(&args);
                    assert!(
                        code.as_deref() != Some("NetStream.Play.Failed")
                            && code.as_deref() != Some("NetStream.Play.StreamNotFound"),
                        "play refused: {code:?}"
                    );
                    if code.as_deref() == Some("NetStream.Play.Start") {
                        return c;
                    }
                }
                Some(_) => {}
                None => panic!("no NetStream.Play.Start within 5 s"),
            }
        }
    }

    fn command(&mut self, name: &str, tid: f64, obj: Amf0Value, args: Vec<Amf0Value>, sid: u32) {
        let msg = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: tid,
            command_object: obj,
            additional_arguments: args,
        };
        self.send(msg, sid);
    }

    fn send(&mut self, msg: RtmpMessage, sid: u32) {
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), sid)
            .unwrap();
        let packet = self.ser.serialize(&payload, false, false).unwrap();
        self.stream.write_all(&packet.bytes).unwrap();
    }

    fn expect_result(&mut self, what: &str, timeout: Duration) -> Vec<Amf0Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Some(Incoming::Command { name, args }) if name == "_result" => return args,
                Some(Incoming::Command { name, args }) if name == "_error" => {
                    panic!("{what} refused: {args:?}")
                }
                Some(_) => {}
                None => panic!("no _result for {what} within {timeout:?}"),
            }
        }
    }

    /// The next message, or `None` at the deadline or when the connection ends.
    fn next(&mut self, deadline: Instant) -> Option<Incoming> {
        loop {
            let input = std::mem::take(&mut self.input);
            let payload = self
                .de
                .get_next_message(&input)
                .expect("the server's chunk stream is valid");
            if let Some(p) = payload {
                return Some(self.incoming(p));
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    self.received += n as u64;
                    self.ack_if_due();
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => return None,
            }
        }
    }

    fn ack_if_due(&mut self) {
        if let Some(w) = self.ack_window {
            if self.received - self.acked >= u64::from(w) {
                self.acked = self.received;
                let seq = self.received as u32;
                // A failed ack write means the connection is going away; reads will say so.
                let payload = RtmpMessage::Acknowledgement {
                    sequence_number: seq,
                }
                .into_message_payload(RtmpTimestamp::new(0), 0)
                .unwrap();
                if let Ok(p) = self.ser.serialize(&payload, false, false) {
                    let _ = self.stream.write_all(&p.bytes);
                }
            }
        }
    }

    fn incoming(&mut self, p: MessagePayload) -> Incoming {
        if p.type_id == 8 || p.type_id == 9 {
            return Incoming::Media(Media {
                at: Instant::now(),
                type_id: p.type_id,
                timestamp: p.timestamp.value,
                body: p.data,
            });
        }
        match p.to_rtmp_message() {
            Ok(RtmpMessage::SetChunkSize { size }) => {
                self.de.set_max_chunk_size(size as usize).unwrap();
                Incoming::Other
            }
            Ok(RtmpMessage::WindowAcknowledgement { size }) => {
                self.ack_window = Some(size);
                Incoming::Other
            }
            Ok(RtmpMessage::Amf0Command {
                command_name,
                additional_arguments,
                ..
            }) => Incoming::Command {
                name: command_name,
                args: additional_arguments,
            },
            _ => Incoming::Other,
        }
    }

    /// Keeps reading on a thread, recording media messages and onStatus codes.
    pub fn into_recorder(mut self) -> RawPlayer {
        let media = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let control = self.stream.try_clone().unwrap();
        let stream_id = self.stream_id;
        let thread = {
            let (media, statuses, stop, ended) =
                (media.clone(), statuses.clone(), stop.clone(), ended.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + Duration::from_millis(200);
                    match self.next(deadline) {
                        Some(Incoming::Media(m)) => media.lock().unwrap().push(m),
                        Some(Incoming::Command { name, args }) if name == "onStatus" => {
                            if let Some(code) = status_code(&args) {
                                statuses.lock().unwrap().push(code);
                            }
                        }
                        Some(_) => {}
                        None => {
                            if Instant::now() < deadline {
                                break; // the connection ended
                            }
                        }
                    }
                }
                ended.store(true, Ordering::Relaxed);
            })
        };
        RawPlayer {
            media,
            statuses,
            stop,
            ended,
            control,
            stream_id,
            thread: Some(thread),
        }
    }
}

fn status_code(args: &[Amf0Value]) -> Option<String> {
    args.iter().find_map(|a| match a {
        Amf0Value::Object(p) => match p.get("code") {
            Some(Amf0Value::Utf8String(c)) => Some(c.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// A playing [`Client`] that records everything on a thread until dropped.
pub struct RawPlayer {
    media: Arc<Mutex<Vec<Media>>>,
    statuses: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    control: TcpStream,
    stream_id: u32,
    thread: Option<JoinHandle<()>>,
}

impl RawPlayer {
    pub fn media(&self) -> Vec<Media> {
        self.media.lock().unwrap().clone()
    }

    pub fn statuses(&self) -> Vec<String> {
        self.statuses.lock().unwrap().clone()
    }

    /// Whether the server closed the connection.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Sends `pause` (true) or unpause (false) on the playing stream. Its own serializer starts
    /// with a full header, which is valid whatever the reading thread sent before.
    pub fn pause(&self, pause: bool) {
        let msg = RtmpMessage::Amf0Command {
            command_name: "pause".into(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![Amf0Value::Boolean(pause), Amf0Value::Number(0.0)],
        };
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), self.stream_id)
            .unwrap();
        let packet = ChunkSerializer::new()
            .serialize(&payload, false, false)
            .unwrap();
        (&self.control).write_all(&packet.bytes).unwrap();
    }

    /// Closes the connection from this side (the reading thread then ends).
    pub fn close(&self) {
        let _ = self.control.shutdown(Shutdown::Both);
    }
}

impl Drop for RawPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.control.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
