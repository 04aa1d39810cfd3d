//! AMF0 command and data bodies into a `ServerSession`, the only public way to the private
//! `rtmp::amf` decoder.
//!
//! Input: `[flags] [split: u16] [body...]`. `flags` picks the session state the body arrives
//! in (awaiting connect, connected, publishing, playing), the message type (20 command,
//! 17 AMF3 command, 18 data, 15 AMF3 data) and optionally a well-formed command name and
//! transaction id (or `@setDataFrame`/`onMetaData`) to prepend, so the fuzzer reaches the
//! argument handling of every command and not only the header checks. The body travels as one
//! message on chunk stream 3, after a valid plain handshake and the commands of the state.
//!
//! Invariants:
//! - no panic and no stack overflow (deep nesting must be refused before `rml_amf0` recurses);
//! - an error is `is_protocol()`, `is_state()` or `is_limit()`, never `Output`/`Closed`, and
//!   afterwards the session is closed and says so (`is_closed()`, `Err(Closed)` on more input);
//! - the same events, outcome and output messages (AMF0 bodies compared as values) whether
//!   the fuzzed message arrives whole or split at a fuzzer-chosen byte;
//! - a publish/play requested before a failing message can no longer be accepted (a state
//!   error on the closed session);
//! - every `Metadata` event's payload starts with the AMF0 string "onMetaData";
//! - everything the session writes after S0/S1/S2 is a sequence of complete RTMP chunks that
//!   our `ChunkReader` reads back to the end, and every command we send is valid AMF0 that
//!   starts with a name and a transaction id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moment::media::is_on_metadata;
use moment::rtmp::{
    ChunkReader, ChunkWriter, MessageHeader, Payload, ReaderLimits, RtmpError, ServerSession,
    SessionConfig, SessionEvent,
};
use rml_amf0::Amf0Value as V;

const NAMES: [&str; 14] = [
    "connect",
    "createStream",
    "publish",
    "play",
    "deleteStream",
    "closeStream",
    "pause",
    "FCPublish",
    "FCUnpublish",
    "releaseStream",
    "FCSubscribe",
    "getStreamLength",
    "@setDataFrame",
    "onMetaData",
];

fn queue_command(w: &mut ChunkWriter, name: &str, txn: f64, args: Vec<V>, stream_id: u32) {
    let mut values = vec![V::Utf8String(name.into()), V::Number(txn)];
    values.extend(args);
    let body = rml_amf0::serialize(&values).unwrap();
    let h = MessageHeader {
        csid: 3,
        timestamp: 0,
        type_id: 20,
        stream_id,
    };
    w.queue(h, Payload::Inline(&body)).unwrap();
}

/// The client's bytes: handshake, the commands that reach `state`, then `body` as one message.
/// Returns the bytes and where the fuzzed message starts in them.
fn client_bytes(state: u8, type_id: u8, stream_id: u32, body: &[u8]) -> (Vec<u8>, usize) {
    let mut w = ChunkWriter::new();
    w.queue_raw(&[3]);
    w.queue_raw(&[0; 1536 * 2]);
    if state >= 1 {
        let obj = V::Object([("app".to_string(), V::Utf8String("live".into()))].into());
        queue_command(&mut w, "connect", 1.0, vec![obj], 0);
    }
    if state >= 2 {
        queue_command(&mut w, "createStream", 2.0, vec![V::Null], 0);
        let verb = if state == 2 { "publish" } else { "play" };
        queue_command(
            &mut w,
            verb,
            3.0,
            vec![V::Null, V::Utf8String("s".into())],
            1,
        );
    }
    let prefix_len = w.pending_bytes();
    let h = MessageHeader {
        csid: 3,
        timestamp: 0,
        type_id,
        stream_id,
    };
    w.queue(h, Payload::Inline(body)).unwrap();
    let mut out = Vec::new();
    w.io_slices(&mut out);
    (
        out.iter().flat_map(|s| s.iter().copied()).collect(),
        prefix_len,
    )
}

struct Run {
    events: Vec<SessionEvent>,
    /// Output after S0 and S1 (S1 holds random bytes).
    output: Vec<u8>,
    error: Option<String>,
}

fn run(parts: &[&[u8]]) -> Run {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut events = Vec::new();
    let mut output = Vec::new();
    let mut error = None;
    for part in parts {
        let r = s.handle_input(part);
        while let Some(e) = s.poll_event() {
            match &e {
                // Events queued before a failing message are still delivered; accepting
                // after the failure is a state error.
                SessionEvent::PublishRequested { stream_id, .. } => {
                    let r = s.accept_publish(*stream_id);
                    assert!(r.is_ok() || (s.is_closed() && r.unwrap_err().is_state()));
                }
                SessionEvent::PlayRequested { stream_id, .. } => {
                    let r = s.accept_play(*stream_id);
                    assert!(r.is_ok() || (s.is_closed() && r.unwrap_err().is_state()));
                }
                SessionEvent::Metadata { payload } => {
                    assert!(is_on_metadata(payload), "metadata payload {payload:?}")
                }
                _ => {}
            }
            events.push(e);
        }
        let mut slices = Vec::new();
        s.io_slices(&mut slices);
        for sl in &slices {
            output.extend_from_slice(sl);
        }
        let n: usize = slices.iter().map(|s| s.len()).sum();
        assert_eq!(n, s.pending_bytes());
        drop(slices);
        s.advance(n);
        assert_eq!(s.pending_bytes(), 0);
        if let Err(e) = r {
            check_error(&e);
            assert!(s.is_closed());
            assert!(s.handle_input(&[0]).unwrap_err().is_closed());
            error = Some(e.to_string());
            break;
        }
    }
    let skip = (1 + 1536).min(output.len());
    output.drain(..skip);
    Run {
        events,
        output,
        error,
    }
}

fn check_error(e: &RtmpError) {
    assert!(
        e.is_protocol() || e.is_state() || e.is_limit(),
        "unexpected error kind: {e:?}"
    );
}

/// One message we sent; AMF0 bodies decoded (objects are hash maps: their byte order varies
/// between runs, their value does not).
#[derive(Debug, PartialEq)]
enum Sent {
    Amf0 {
        csid: u32,
        type_id: u8,
        stream_id: u32,
        values: Vec<V>,
    },
    Other {
        csid: u32,
        type_id: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
}

/// Reads our output (after S0/S1) as S2 then chunks, to the last byte.
fn read_output(output: &[u8]) -> Vec<Sent> {
    if output.len() < 1536 {
        // The handshake did not complete (only possible if input ended inside it).
        return Vec::new();
    }
    let mut input = &output[1536..];
    let mut r = ChunkReader::new(ReaderLimits::default());
    let mut sent = Vec::new();
    while let Some(m) = r.read(&mut input).expect("our own output is valid chunks") {
        let (csid, type_id, stream_id) = (m.csid, m.type_id, m.stream_id);
        match type_id {
            1 => r
                .set_chunk_size(u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
                .unwrap(),
            3..=6 => {}
            18 | 20 => {
                let values = rml_amf0::deserialize(&mut &m.payload[..]).expect("our AMF0");
                if type_id == 20 {
                    assert!(
                        matches!(values.as_slice(), [V::Utf8String(_), V::Number(_), ..]),
                        "command {values:?}"
                    );
                }
                sent.push(Sent::Amf0 {
                    csid,
                    type_id,
                    stream_id,
                    values,
                });
                continue;
            }
            t => panic!("we sent message type {t}"),
        }
        let payload = m.payload.to_vec();
        sent.push(Sent::Other {
            csid,
            type_id,
            stream_id,
            payload,
        });
    }
    assert!(input.is_empty());
    assert_eq!(r.partial_bytes(), 0, "output ends inside a message");
    sent
}

fuzz_target!(|data: &[u8]| {
    let [flags, s0, s1, fuzzed @ ..] = data else {
        return;
    };
    let state = flags & 3;
    let type_id = [20, 17, 18, 15][usize::from((flags >> 2) & 3)];
    let stream_id = if state >= 2 && flags & 0x10 != 0 {
        1
    } else {
        0
    };
    let mut body = Vec::new();
    if type_id == 17 || type_id == 15 {
        body.push(0); // the AMF3 message's leading format byte, as ffmpeg sends it
    }
    if flags & 0x20 != 0 {
        // A well-formed name (and for commands a transaction id) before the fuzzed values.
        let name = NAMES[usize::from(*s0 >> 4) % NAMES.len()];
        body.extend(rml_amf0::serialize(&vec![V::Utf8String(name.into())]).unwrap());
        if type_id == 20 || type_id == 17 {
            body.extend(rml_amf0::serialize(&vec![V::Number(f64::from(*s1))]).unwrap());
        }
    }
    body.extend_from_slice(fuzzed);
    if body.len() > 0xFF_FFFF {
        return;
    }
    let (input, prefix_len) = client_bytes(state, type_id, stream_id, &body);
    let (prefix, msg) = input.split_at(prefix_len);

    // The prefix goes in alone (its publish/play is accepted before the fuzzed message), then
    // the fuzzed message whole or split at a fuzzer-chosen byte.
    let whole = run(&[prefix, msg]);
    let cut = usize::from(u16::from_be_bytes([*s0, *s1])) % (msg.len() + 1);
    let split = run(&[prefix, &msg[..cut], &msg[cut..]]);
    assert_eq!(whole.events, split.events);
    assert_eq!(whole.error, split.error);
    assert_eq!(read_output(&whole.output), read_output(&split.output));
});
