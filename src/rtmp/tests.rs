//! End-to-end sans-IO tests: rml_rtmp's `ClientSession` (publisher and player) talking to our
//! `ServerSession` in memory, and the publisher's byte stream replayed split at every byte.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use super::*;
use crate::pages::{Message, PagePool, PoolConfig};

/// An rml client wired to one of our server sessions; records every client→server byte.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    sent: Vec<u8>,
    client_events: Vec<ClientSessionEvent>,
    server_events: Vec<SessionEvent>,
    /// Answer publish/play requests automatically.
    accept: bool,
}

impl Pair {
    fn new() -> Pair {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
        let mut server = ServerSession::new(SessionConfig::default());
        server.handle_input(&c0c1).unwrap();
        let s = take_output(&mut server);
        let c2 = match hs.process_bytes(&s).unwrap() {
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                assert!(remaining_bytes.is_empty());
                response_bytes
            }
            HandshakeProcessResult::InProgress { .. } => {
                panic!("client handshake did not complete")
            }
        };
        server.handle_input(&c2).unwrap();
        assert_eq!(server.pending_bytes(), 0);
        let (client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut sent = c0c1;
        sent.extend_from_slice(&c2);
        let mut pair = Pair {
            client,
            server,
            sent,
            client_events: vec![],
            server_events: vec![],
            accept: true,
        };
        pair.deliver(results);
        pair
    }

    /// Sends client results to the server, then server output back, until quiet.
    fn deliver(&mut self, results: Vec<ClientSessionResult>) {
        let mut to_server = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => to_server.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        if to_server.is_empty() {
            return;
        }
        self.sent.extend_from_slice(&to_server);
        self.server.handle_input(&to_server).unwrap();
        self.server_side();
    }

    fn server_side(&mut self) {
        while let Some(e) = self.server.poll_event() {
            if self.accept {
                match &e {
                    SessionEvent::PublishRequested { stream_id, .. } => {
                        self.server.accept_publish(*stream_id).unwrap()
                    }
                    SessionEvent::PlayRequested { stream_id, .. } => {
                        self.server.accept_play(*stream_id).unwrap()
                    }
                    _ => {}
                }
            }
            self.server_events.push(e);
        }
        let out = take_output(&mut self.server);
        if !out.is_empty() {
            let results = self.client.handle_input(&out).unwrap();
            self.deliver(results);
        }
    }
}

fn take_output(s: &mut ServerSession) -> Vec<u8> {
    let mut out = Vec::new();
    s.io_slices(&mut out);
    let bytes: Vec<u8> = out.iter().flat_map(|s| s.iter().copied()).collect();
    drop(out);
    s.advance(bytes.len());
    bytes
}

fn pages() -> crate::pages::StreamWriter {
    PagePool::new(PoolConfig::default()).writer("test", 1 << 30)
}

fn publish_session() -> Pair {
    let mut p = Pair::new();
    let r = p.client.request_connection("live".into()).unwrap();
    p.deliver(vec![r]);
    assert!(p
        .client_events
        .contains(&ClientSessionEvent::ConnectionRequestAccepted));
    let r = p
        .client
        .request_publishing("cam1".into(), PublishRequestType::Live)
        .unwrap();
    p.deliver(vec![r]);
    assert!(
        p.client_events
            .contains(&ClientSessionEvent::PublishRequestAccepted),
        "{:?}",
        p.client_events
    );
    let mut md = StreamMetadata::new();
    md.video_width = Some(640);
    md.video_height = Some(360);
    md.video_codec_id = Some(7);
    let r = p.client.publish_metadata(&md).unwrap();
    p.deliver(vec![r]);
    for i in 0..20u32 {
        let video = Bytes::from(vec![
            if i == 0 { 0x17 } else { 0x27 };
            100 + i as usize * 700
        ]);
        let r = p
            .client
            .publish_video_data(video, RtmpTimestamp::new(i * 40), false)
            .unwrap();
        p.deliver(vec![r]);
        let r = p
            .client
            .publish_audio_data(
                Bytes::from(vec![0xaf; 7 + i as usize]),
                RtmpTimestamp::new(i * 40 + 3),
                false,
            )
            .unwrap();
        p.deliver(vec![r]);
    }
    p
}

#[test]
fn publish_then_play_through_rml_clients() {
    let publisher = publish_session();
    let ev = &publisher.server_events;
    assert_eq!(ev[0], SessionEvent::Connected { app: "live".into() });
    assert!(
        matches!(&ev[1], SessionEvent::PublishRequested { app, stream_name, stream_id: 1 } if app == "live" && stream_name == "cam1")
    );
    let metadata = ev.iter().find_map(|e| match e {
        SessionEvent::Metadata { payload } => Some(payload.clone()),
        _ => None,
    });
    let metadata = metadata.expect("metadata event");
    assert_eq!(
        &metadata[..13],
        b"\x02\x00\x0aonMetaData",
        "metadata starts with onMetaData"
    );
    let media: Vec<(MediaKind, u32, Bytes)> = ev
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Media {
                kind,
                timestamp,
                payload,
            } => Some((*kind, *timestamp, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(media.len(), 40);
    assert_eq!(media[2].0, MediaKind::Video);
    assert_eq!(media[2].1, 40);
    assert_eq!(media[3].1, 43);
    assert_eq!(media[38].2.len(), 100 + 19 * 700);

    // Store once in pages, as the hub does, and play to two rml players.
    let mut writer = pages();
    let md_msg = writer.write(&[&metadata]).unwrap();
    let stored: Vec<(MediaKind, u32, Message)> = media
        .iter()
        .map(|(k, t, p)| (*k, *t, writer.write(&[p]).unwrap()))
        .collect();
    for _ in 0..2 {
        let mut player = Pair::new();
        let r = player.client.request_connection("live".into()).unwrap();
        player.deliver(vec![r]);
        let r = player.client.request_playback("cam1".into()).unwrap();
        player.deliver(vec![r]);
        assert!(
            player
                .client_events
                .contains(&ClientSessionEvent::PlaybackRequestAccepted),
            "{:?}",
            player.client_events
        );
        assert!(
            matches!(&player.server_events[1], SessionEvent::PlayRequested { stream_name, .. } if stream_name == "cam1")
        );
        let sid = 1;
        player.server.send_metadata(sid, md_msg.clone()).unwrap();
        for (k, t, m) in &stored {
            player.server.send_media(sid, *k, *t, m.clone()).unwrap();
        }
        player.server_side();
        let got_md = player.client_events.iter().find_map(|e| match e {
            ClientSessionEvent::StreamMetadataReceived { metadata } => Some(metadata.clone()),
            _ => None,
        });
        let got_md = got_md.expect("player got metadata");
        assert_eq!(
            (
                got_md.video_width,
                got_md.video_height,
                got_md.video_codec_id
            ),
            (Some(640), Some(360), Some(7))
        );
        let got: Vec<(MediaKind, u32, Bytes)> = player
            .client_events
            .iter()
            .filter_map(|e| match e {
                ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                    Some((MediaKind::Video, timestamp.value, data.clone()))
                }
                ClientSessionEvent::AudioDataReceived { timestamp, data } => {
                    Some((MediaKind::Audio, timestamp.value, data.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, media);
    }
}

/// The whole publisher conversation (handshake, connect, createStream, publish, metadata,
/// media) replayed into fresh sessions, split at every byte: same events every time.
#[test]
fn publisher_bytes_split_at_every_byte() {
    let recorded = publish_session().sent;
    let run = |parts: &[&[u8]]| -> Vec<SessionEvent> {
        let mut s = ServerSession::new(SessionConfig::default());
        let mut events = Vec::new();
        for part in parts {
            s.handle_input(part).unwrap();
            while let Some(e) = s.poll_event() {
                if let SessionEvent::PublishRequested { stream_id, .. } = &e {
                    s.accept_publish(*stream_id).unwrap();
                }
                events.push(e);
            }
            let n = s.pending_bytes();
            s.advance(n);
        }
        events
    };
    let whole = run(&[&recorded]);
    assert_eq!(whole.len(), 1 + 1 + 1 + 40);
    // Every split in the first 6000 bytes (handshake and commands), then every 97th.
    let splits = (0..6000.min(recorded.len())).chain((6000..recorded.len()).step_by(97));
    for split in splits {
        let (a, b) = recorded.split_at(split);
        assert_eq!(run(&[a, b]), whole, "split at {split}");
    }
    // And one byte at a time.
    let bytes: Vec<&[u8]> = recorded.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

fn connected_server() -> (ServerSession, Vec<u8>) {
    let p = Pair::new();
    let sent = p.sent.clone();
    let mut s = ServerSession::new(SessionConfig::default());
    s.handle_input(&sent).unwrap();
    (s, sent)
}

fn command(name: &str, txn: f64, args: Vec<rml_amf0::Amf0Value>, stream_id: u32) -> Vec<u8> {
    let mut values = vec![
        rml_amf0::Amf0Value::Utf8String(name.into()),
        rml_amf0::Amf0Value::Number(txn),
    ];
    values.extend(args);
    let body = amf::encode(&values).unwrap();
    let mut w = ChunkWriter::new();
    w.set_chunk_size(0xFF_FFFF);
    w.queue(
        MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: 20,
            stream_id,
        },
        Payload::Inline(&body),
    )
    .unwrap();
    let mut out = Vec::new();
    w.io_slices(&mut out);
    out.iter().flat_map(|s| s.iter().copied()).collect()
}

fn connect_cmd() -> Vec<u8> {
    use rml_amf0::Amf0Value as V;
    let obj = V::Object([("app".to_string(), V::Utf8String("live".into()))].into());
    command("connect", 1.0, vec![obj], 0)
}

#[test]
fn command_before_connect_is_a_state_error_and_closes() {
    let (mut s, _) = connected_server();
    let e = s
        .handle_input(&command(
            "createStream",
            2.0,
            vec![rml_amf0::Amf0Value::Null],
            0,
        ))
        .unwrap_err();
    assert!(e.is_state(), "{e}");
    assert!(s.is_closed());
    assert!(s.handle_input(&[0]).unwrap_err().is_closed());
}

#[test]
fn publishing_connection_cannot_play() {
    use rml_amf0::Amf0Value as V;
    let (mut s, _) = connected_server();
    s.handle_input(&connect_cmd()).unwrap();
    s.handle_input(&command("createStream", 2.0, vec![V::Null], 0))
        .unwrap();
    s.handle_input(&command(
        "publish",
        3.0,
        vec![
            V::Null,
            V::Utf8String("a".into()),
            V::Utf8String("live".into()),
        ],
        1,
    ))
    .unwrap();
    let e = s
        .handle_input(&command(
            "play",
            4.0,
            vec![V::Null, V::Utf8String("a".into())],
            1,
        ))
        .unwrap_err();
    assert!(e.is_state(), "{e}");
}

#[test]
fn reject_publish_sends_bad_name_and_closes() {
    use rml_amf0::Amf0Value as V;
    let (mut s, _) = connected_server();
    s.handle_input(&connect_cmd()).unwrap();
    s.handle_input(&command("createStream", 2.0, vec![V::Null], 0))
        .unwrap();
    s.handle_input(&command(
        "publish",
        3.0,
        vec![V::Null, V::Utf8String("a".into())],
        1,
    ))
    .unwrap();
    take_output(&mut s);
    s.reject_publish(1, "stream already published").unwrap();
    let out = take_output(&mut s);
    assert!(out.windows(25).any(|w| w == b"NetStream.Publish.BadName"));
    assert!(s.is_closed());
    assert!(s.accept_publish(1).is_err());
}

#[test]
fn ping_is_answered_and_window_is_acknowledged() {
    let (mut s, _) = connected_server();
    s.handle_input(&connect_cmd()).unwrap();
    take_output(&mut s);
    // Window Acknowledgement Size 100, then a PingRequest.
    s.handle_input(&[0x02, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0, 0, 0, 0, 100])
        .unwrap();
    s.handle_input(&[
        0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0, 0, 6, 0, 0, 0x12, 0x34,
    ])
    .unwrap();
    let out = take_output(&mut s);
    // PingResponse (event 7) echoing the timestamp.
    assert!(
        out.windows(6).any(|w| w == [0, 7, 0, 0, 0x12, 0x34]),
        "{out:02x?}"
    );
    // The window (100 bytes) has been crossed long ago: an Acknowledgement (type 3) was sent.
    assert!(out.windows(8).any(|w| w[..4] == [0, 0, 4, 3]), "{out:02x?}");
}

#[test]
fn deep_amf_command_is_an_error_not_a_crash() {
    let (mut s, _) = connected_server();
    let mut body = vec![0x02, 0, 7];
    body.extend_from_slice(b"connect");
    body.extend([0x00; 9]);
    for _ in 0..50_000 {
        body.extend([0x03, 0x00, 0x01, b'a']);
    }
    let mut w = ChunkWriter::new();
    w.queue(
        MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
        },
        Payload::Inline(&body),
    )
    .unwrap();
    let mut out = Vec::new();
    w.io_slices(&mut out);
    let bytes: Vec<u8> = out.iter().flat_map(|s| s.iter().copied()).collect();
    let e = s.handle_input(&bytes).unwrap_err();
    assert!(e.is_protocol(), "{e}");
}
