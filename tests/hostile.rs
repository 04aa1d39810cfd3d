//! Hostile and broken peers: each bad connection is closed with a log line naming it, memory
//! does not follow what a peer claims, and a normal player still plays the demo afterwards.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::rtmp::{chunks, handshake, message_header, tcp, wait_closed};
use common::{Kind, Player, Server};

/// Short handshake deadline and a small message limit, so the limits are what is tested.
const CONFIG: &str = "\
[rtmp]
listen = \"127.0.0.1:0\"
handshake_timeout_s = 2
max_message_bytes = 65536

[[file]]
name = \"demo\"
";

/// RSS growth that would mean the server allocated what a peer claimed (MiB).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// The server's log line prefix for a connection from `stream`'s local port.
fn peer_tag(stream: &TcpStream) -> String {
    format!("peer={}", stream.local_addr().unwrap())
}

/// Waits for the server to close `stream`, then checks what must hold after any attack: a log
/// line for this connection containing `needle`, the server alive, RSS not grown by what the
/// peer claimed, and a new player decoding the demo.
fn assert_survived(
    server: &Server,
    mut stream: TcpStream,
    needle: &str,
    rss_before: u64,
    rss_slack_kib: u64,
    within: Duration,
) {
    let tag = peer_tag(&stream);
    let closed = wait_closed(&mut stream, within);
    assert!(
        closed.is_some(),
        "the server did not close the bad connection within {within:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let logged = || {
        server
            .log()
            .lines()
            .any(|l| l.contains(&tag) && l.contains(needle))
    };
    while !logged() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(logged(), "no log line with {tag} and {needle:?}");
    for l in server
        .log()
        .lines()
        .filter(|l| l.contains(&tag) && l.contains(needle))
    {
        eprintln!("server: {l}");
    }
    server.assert_alive("a bad connection");
    let rss = server.rss_kib();
    assert!(
        rss < rss_before + rss_slack_kib,
        "server RSS went from {rss_before} KiB to {rss} KiB"
    );
    assert_demo_plays(server);
}

fn assert_demo_plays(server: &Server) {
    let mut player = Player::start(&server.url("demo"), Some(2.0), Duration::from_secs(30));
    let fin = player.finish(Duration::from_secs(25));
    assert!(fin.success(), "the demo no longer plays: {}", fin.stderr);
    assert_eq!(fin.stderr.trim(), "", "decode errors");
    assert!(
        player.count(Kind::Video) >= 45,
        "{} video frames",
        player.count(Kind::Video)
    );
    assert!(
        player.count(Kind::Audio) >= 80,
        "{} audio frames",
        player.count(Kind::Audio)
    );
}

#[test]
fn garbage_instead_of_a_handshake() {
    let server = Server::start(CONFIG);
    let rss = server.rss_kib();
    let mut s = tcp(server.addr);
    let mut garbage = b"GET / HTTP/1.1\r\nHost: moment\r\n\r\n".to_vec();
    // A deterministic byte soup after it (xorshift).
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        garbage.push(x as u8);
    }
    // The server may close while we still write: that is fine.
    let _ = s.write_all(&garbage);
    assert_survived(
        &server,
        s,
        "bad input from peer",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(5),
    );
}

#[test]
fn truncated_handshake_then_silence_is_closed_by_the_deadline() {
    let server = Server::start(CONFIG);
    let rss = server.rss_kib();
    let mut s = tcp(server.addr);
    s.write_all(&[3u8]).unwrap();
    s.write_all(&[0u8; 700]).unwrap(); // C1 is 1536 bytes: stop in the middle
    let start = Instant::now();
    let tag = peer_tag(&s);
    let mut probe = s.try_clone().unwrap();
    wait_closed(&mut probe, Duration::from_secs(8)).expect("still open after 8 s");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed after {waited:?}, before the 2 s handshake deadline"
    );
    assert!(
        server.wait_log(&tag, Duration::from_secs(3)),
        "no log line for the connection"
    );
    assert_survived(
        &server,
        s,
        "no publish or play in time",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(1),
    );
}

#[test]
fn chunk_size_2_pow_31_is_refused() {
    let server = Server::start(CONFIG);
    let rss = server.rss_kib();
    let mut h = handshake(server.addr);
    // Set Chunk Size (type 1) with bit 31 set: 2^31.
    h.stream
        .write_all(&chunks(2, 1, 0, &0x8000_0000u32.to_be_bytes(), 128))
        .unwrap();
    assert_survived(
        &server,
        h.stream,
        "bad input from peer",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(5),
    );
}

/// The default message limit (4 MiB), for the attacks that stay under it.
const CONFIG_DEFAULT_LIMITS: &str = "\
[rtmp]
listen = \"127.0.0.1:0\"
handshake_timeout_s = 2

[[file]]
name = \"demo\"
";

#[test]
fn largest_chunk_size_then_a_huge_message_then_silence() {
    let server = Server::start(CONFIG_DEFAULT_LIMITS);
    let rss = server.rss_kib();
    let mut h = handshake(server.addr);
    // 2^31 - 1, the largest legal chunk size: one chunk may now carry a whole message.
    h.stream
        .write_all(&chunks(2, 1, 0, &0x7FFF_FFFFu32.to_be_bytes(), 128))
        .unwrap();
    // A video message of the largest allowed size, an eighth of it sent, then nothing.
    let mut m = message_header(3, 4 << 20, 9, 1);
    m.extend(std::iter::repeat_n(0x17u8, 512 << 10));
    h.stream.write_all(&m).unwrap();
    assert_survived(
        &server,
        h.stream,
        "no publish or play in time",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(6),
    );
}

#[test]
fn partial_messages_on_every_chunk_stream() {
    let server = Server::start(CONFIG_DEFAULT_LIMITS);
    let rss = server.rss_kib();
    let mut h = handshake(server.addr);
    const CHUNK: usize = 64 * 1024;
    h.stream
        .write_all(&chunks(2, 1, 0, &(CHUNK as u32).to_be_bytes(), 128))
        .unwrap();
    // 61 chunk streams, each declaring a 4 MiB video message (244 MiB claimed), fed one
    // 64 KiB chunk at a time in turn: nothing ever completes, the partial bytes only grow.
    let body = vec![0x17u8; CHUNK];
    let mut sent = 0usize;
    'rounds: for round in 0..8 {
        for csid in 3..=63u8 {
            let mut m = if round == 0 {
                message_header(csid, 4 << 20, 9, 1)
            } else {
                vec![0xC0 | csid]
            };
            m.extend_from_slice(&body);
            if h.stream.write_all(&m).is_err() {
                break 'rounds; // closed for a limit
            }
            sent += m.len();
        }
    }
    eprintln!("sent {sent} bytes of partial messages");
    // Holding up to max_partial_bytes (8 MiB) is allowed; the claimed 244 MiB is not.
    assert_survived(
        &server,
        h.stream,
        "limit exceeded",
        rss,
        3 * RSS_SLACK_KIB,
        Duration::from_secs(5),
    );
}

#[test]
fn message_longer_than_max_message_bytes() {
    let server = Server::start(CONFIG);
    let rss = server.rss_kib();
    let mut h = handshake(server.addr);
    // 0xFFFFFF bytes declared; max_message_bytes is 65536. Send the first chunk's worth.
    let mut m = message_header(3, 0xFF_FFFF, 9, 1);
    m.extend(std::iter::repeat_n(0u8, 128));
    let _ = h.stream.write_all(&m);
    assert_survived(
        &server,
        h.stream,
        "limit exceeded",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(5),
    );
}

#[test]
fn deeply_nested_amf_in_connect() {
    let server = Server::start(CONFIG);
    let rss = server.rss_kib();
    let mut h = handshake(server.addr);
    // "connect", transaction 1, then a command object nested 12000 levels deep:
    // { "a": { "a": { ... } } } — never closed, as a stack-smashing peer would send it.
    let mut body = vec![0x02, 0x00, 0x07];
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&1.0f64.to_be_bytes());
    for _ in 0..12_000 {
        body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    body.extend_from_slice(&[0x05]);
    assert!(body.len() < 65536);
    let _ = h.stream.write_all(&chunks(3, 20, 0, &body, 128));
    assert_survived(
        &server,
        h.stream,
        "bad input from peer",
        rss,
        RSS_SLACK_KIB,
        Duration::from_secs(5),
    );
}

#[test]
fn three_hundred_silent_connections() {
    let server = Server::start(CONFIG);
    let before = server.log_count("no publish or play in time");
    let mut silent: Vec<TcpStream> = (0..300).map(|_| tcp(server.addr)).collect();
    let opened = Instant::now();
    // They hold no one up: the demo plays while they sit there.
    assert_demo_plays(&server);
    // Then the handshake deadline (2 s) closes every one of them.
    for s in &mut silent {
        let left = Duration::from_secs(10).saturating_sub(opened.elapsed());
        assert!(
            wait_closed(s, left.max(Duration::from_millis(100))).is_some(),
            "a silent connection was still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    assert!(
        server.wait_log_count(
            "no publish or play in time",
            before + 299,
            Duration::from_secs(3)
        ),
        "{} handshake-deadline lines for 300 silent connections",
        server.log_count("no publish or play in time") - before
    );
    server.assert_alive("300 silent connections");
    assert_demo_plays(&server);
}
