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

/// A publisher sending faster than real time and a player that stopped reading: the hub drops
/// the player's video, keeps its audio up to `hard_bytes` (default 8 MiB), then disconnects it.
/// Returns the server's RSS growth in KiB over the episode.
fn rss_growth_with_a_flooded_stalled_player(pages_mode: &str) -> u64 {
    let server = Server::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n\n[pages]\nmode = \"{pages_mode}\"\n"
    ));
    let url = server.url("flood");
    let _publisher = common::publish_fast("h264-main-3mbps-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=flood", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(1));
    let rss_start = server.rss_kib();
    let _stalled = Client::play(server.addr, "flood");
    let mut rss_max = rss_start;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(250));
        rss_max = rss_max.max(server.rss_kib());
    }
    assert!(
        server.log_count("player disconnected") > 0,
        "the stalled player was not disconnected over hard_bytes"
    );
    eprintln!("pages mode {pages_mode}: server RSS {rss_start} KiB → at most {rss_max} KiB");
    rss_max - rss_start
}

/// What a stalled player may cost: its queue (hard_bytes, twice over for allocator slack),
/// the page pool's free-page cache (1024 pages of 8 KiB), and 8 MiB for everything else.
const STALLED_PLAYER_BUDGET_KIB: u64 = 2 * 8 * 1024 + 8 * 1024 + 8 * 1024;

#[test]
fn a_flooded_stalled_player_costs_about_its_queue_bound_contiguous_pages() {
    let growth = rss_growth_with_a_flooded_stalled_player("contiguous");
    assert!(
        growth < STALLED_PLAYER_BUDGET_KIB,
        "RSS grew {growth} KiB for one stalled player (hard_bytes = 8 MiB)"
    );
}

/// In paged mode each message kept in a queue pins the whole shared page it sits in, with the
/// bytes of the video frames dropped around it; the hub bounds that span by hard_bytes too
/// (it once let a stalled player with hard_bytes = 8 MiB hold ~64 MiB, the stream's budget).
#[test]
fn a_flooded_stalled_player_costs_about_its_queue_bound_paged() {
    let growth = rss_growth_with_a_flooded_stalled_player("paged");
    assert!(
        growth < STALLED_PLAYER_BUDGET_KIB,
        "RSS grew {growth} KiB for one stalled player (hard_bytes = 8 MiB)"
    );
}

/// The user-visible side of the one above: the pages a stalled player pins count against its
/// stream's page budget. With a 16 MiB stream budget, twice the default hard_bytes, a stalled
/// player must be disconnected (over hard_bytes) before the budget is reached, or every new
/// frame of the publisher would be dropped for every player of the stream.
#[test]
fn a_stalled_player_is_dropped_before_it_fills_the_stream_budget() {
    let server = Server::start(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n\n[pages]\nstream_budget_bytes = 16777216\n",
    );
    let url = server.url("flood");
    let _publisher = common::publish_fast("h264-main-3mbps-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=flood", Duration::from_secs(10)));
    let _stalled = Client::play(server.addr, "flood");
    std::thread::sleep(Duration::from_secs(5));
    let budget_drops = server.log_count("frame dropped: page budget");
    let kicked = server.log_count("player disconnected");
    assert!(
        budget_drops == 0 && kicked > 0,
        "{budget_drops} `frame dropped: page budget` lines (the publisher's frames, for every \
         player); stalled player disconnected: {}",
        kicked > 0
    );
}
