//! Arbitrary bytes into a `ServerSession` after a valid (plain) handshake and, depending on the
//! first input byte, after connect / createStream / publish or play. Invariants: no panic, no
//! unbounded buffering (partial messages stay under the configured limit), and the output is
//! always drainable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moment::rtmp::{
    ChunkWriter, MessageHeader, Payload, ServerSession, SessionConfig, SessionEvent,
};
use rml_amf0::Amf0Value as V;

fn command(w: &mut ChunkWriter, name: &str, txn: f64, args: Vec<V>, stream_id: u32) {
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

fn prefix(mode: u8) -> Vec<u8> {
    let mut w = ChunkWriter::new();
    w.queue_raw(&[3]);
    w.queue_raw(&[0; 1536 * 2]);
    if mode >= 1 {
        let obj = V::Object([("app".to_string(), V::Utf8String("live".into()))].into());
        command(&mut w, "connect", 1.0, vec![obj], 0);
    }
    if mode >= 2 {
        command(&mut w, "createStream", 2.0, vec![V::Null], 0);
        let verb = if mode == 2 { "publish" } else { "play" };
        command(
            &mut w,
            verb,
            3.0,
            vec![V::Null, V::Utf8String("s".into())],
            1,
        );
    }
    let mut out = Vec::new();
    w.io_slices(&mut out);
    out.iter().flat_map(|s| s.iter().copied()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = prefix(mode % 4);
    input.extend_from_slice(rest);
    let split = (mode as usize * 131) % (input.len() + 1);
    let config = SessionConfig::default();
    let mut s = ServerSession::new(config);
    for part in [&input[..split], &input[split..]] {
        if s.handle_input(part).is_err() {
            break;
        }
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::PublishRequested { stream_id, .. } => {
                    s.accept_publish(stream_id).unwrap()
                }
                SessionEvent::PlayRequested { stream_id, .. } => s.accept_play(stream_id).unwrap(),
                _ => {}
            }
        }
        let mut slices = Vec::new();
        s.io_slices(&mut slices);
        let n: usize = slices.iter().map(|s| s.len()).sum();
        assert_eq!(n, s.pending_bytes());
        drop(slices);
        s.advance(n);
    }
});
