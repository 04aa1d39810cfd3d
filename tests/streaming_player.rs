//! A player that streams steadily is written by the server's flush pass, not by its own task
//! (src/rtmp/flush_pass.rs), and the pass looks at its input only every few ticks. That input
//! must still be handled: a pause stops the player's media, an unpause brings it back from a
//! keyframe, and a player that goes away ends its play at once, not at a timeout. The same
//! holds with `write_delay_ms = 0`, where there is no pass and each player's task writes.

mod common;

use std::time::{Duration, Instant};

use common::rtmp::{Client, Media};
use common::{publish, Server};

const CONFIG: &str = "\
[rtmp]
listen = \"127.0.0.1:0\"
";

const CONFIG_NO_DELAY: &str = "\
[rtmp]
listen = \"127.0.0.1:0\"
write_delay_ms = 0
";

fn video(media: &[Media]) -> Vec<&Media> {
    media.iter().filter(|m| m.type_id == 9).collect()
}

#[test]
fn a_streaming_player_is_paused_resumed_and_closed_within_a_second() {
    pause_resume_close(CONFIG);
}

#[test]
fn without_merged_writes_a_player_is_paused_resumed_and_closed_too() {
    pause_resume_close(CONFIG_NO_DELAY);
}

fn pause_resume_close(config: &str) {
    let server = Server::start(config);
    let url = server.url("steady");
    let _publisher = publish("h264-baseline-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=steady", Duration::from_secs(10)));

    let player = Client::play(server.addr, "steady").into_recorder();
    // Long enough for the join burst to end and the player to stream from the flush pass.
    std::thread::sleep(Duration::from_secs(3));
    let streaming = video(&player.media()).len();
    assert!(streaming >= 50, "only {streaming} video frames in 3 s");

    player.pause(true);
    let paused_at = Instant::now();
    // Input is looked at every few ticks (~200 ms); what was already written still arrives.
    // A second leaves room for a loaded machine.
    std::thread::sleep(Duration::from_millis(1000));
    let settled = player.media().len();
    std::thread::sleep(Duration::from_millis(1500));
    let during_pause = player.media().len() - settled;
    assert_eq!(
        during_pause, 0,
        "{during_pause} media messages arrived between 1 s and 2.5 s after the pause"
    );
    assert!(
        player
            .statuses()
            .iter()
            .any(|s| s == "NetStream.Pause.Notify"),
        "no NetStream.Pause.Notify: {:?}",
        player.statuses()
    );

    let before_resume = player.media().len();
    player.pause(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while video(&player.media()[before_resume..]).len() < 25 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let media = player.media();
    let resumed = video(&media[before_resume..]);
    assert!(
        resumed.len() >= 25,
        "{} video frames within 5 s of the unpause",
        resumed.len()
    );
    // After frames were discarded, video starts again at a keyframe (FLV frame type 1).
    assert_eq!(
        resumed[0].body[0] >> 4,
        1,
        "the first video frame after the unpause is not a keyframe"
    );
    eprintln!(
        "paused for {:?}; {} video frames after the unpause",
        paused_at.elapsed(),
        resumed.len()
    );

    let stopped = server.log_count("play stopped");
    let closed_at = Instant::now();
    player.close();
    assert!(
        server.wait_log_count("play stopped", stopped, Duration::from_secs(2)),
        "the server did not notice the player leaving within 2 s"
    );
    eprintln!("play stopped {:?} after the close", closed_at.elapsed());
    server.assert_alive("a paused, resumed and closed player");
}
