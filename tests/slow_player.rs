//! A player that stops reading must cost bounded memory and must not slow anyone else down:
//! the server drops its frames, then disconnects it, while a normal player keeps full rate.

mod common;

use std::time::{Duration, Instant};

use common::rtmp::{wait_closed, Client};
use common::{assert_near, publish, Kind, Player, Server};

const CONFIG: &str = "\
[rtmp]
listen = \"127.0.0.1:0\"

[hub.player]
soft_bytes = 262144
hard_bytes = 1048576
";

#[test]
fn a_stalled_player_is_dropped_and_costs_bounded_memory() {
    let server = Server::start(CONFIG);
    let url = server.url("big");
    let _publisher = publish("h264-main-3mbps-aac.mp4", &url, Duration::from_secs(120));
    assert!(server.wait_log("publish started stream=big", Duration::from_secs(10)));

    let mut normal = Player::start(&url, None, Duration::from_secs(90));
    // Plays, then never reads again: everything the server sends piles up.
    let mut stalled = Client::play(server.addr, "big");
    assert!(
        normal.wait_frames(Kind::Video, 25, Duration::from_secs(15)),
        "the normal player decoded nothing"
    );

    std::thread::sleep(Duration::from_secs(4)); // warm-up: saver, pages, socket buffers
    let rss_start = server.rss_kib();
    let window_start = Instant::now();
    let mut rss_max = rss_start;
    while window_start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(500));
        rss_max = rss_max.max(server.rss_kib());
        server.assert_alive("a player stalled");
    }
    let window_end = Instant::now();
    eprintln!("server RSS {rss_start} KiB after warm-up, at most {rss_max} KiB during 15 s");
    assert!(
        rss_max - rss_start < 30 * 1024,
        "server RSS grew from {rss_start} KiB to {rss_max} KiB while a player stalled"
    );

    // The normal player kept the full rate throughout.
    let rate = normal.wall_rate(Kind::Video, window_start, window_end);
    eprintln!("normal player: {rate:.2} video frames/s while the other player stalled");
    assert_near("normal player's video frames/s", rate, 25.0, 0.06);
    assert!(normal.is_running(), "the normal player stopped");
    let fin = normal.stop();
    assert_eq!(
        fin.stderr.trim(),
        "",
        "the normal player reported decode errors"
    );

    // The stalled player was disconnected, and the server said why.
    let said = |s: &Server| {
        s.log_count("player disconnected") + s.log_count("closing connection: peer stopped reading")
            > 0
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !said(&server) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        said(&server),
        "the server never logged dropping the stalled player"
    );
    assert!(
        wait_closed(&mut stalled.stream, Duration::from_secs(10)).is_some(),
        "the stalled player's connection is still open"
    );
    // Before it went, the hub dropped its frames (over soft_bytes) instead of queueing them.
    assert!(
        server.wait_log_count("play stopped stream=big", 1, Duration::from_secs(5)),
        "no `play stopped` line for the stalled player"
    );
    let dropped: u64 = server
        .log()
        .lines()
        .filter(|l| l.contains("play stopped stream=big"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("dropped="))
        })
        .filter_map(|d| d.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "the server dropped no frames of the stalled player"
    );
}
