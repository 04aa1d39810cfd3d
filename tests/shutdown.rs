//! Graceful shutdown as a user sees it: SIGTERM with peers connected ends every peer (none
//! hangs) and the server exits 0 within the drain period.

mod common;

use std::time::{Duration, Instant};

use common::rtmp::Client;
use common::{publish, publish_fast, Kind, Player, Server, DEMO_CONFIG};

#[test]
fn sigterm_closes_players_and_publishers_and_exits_0() {
    let mut server = Server::start(DEMO_CONFIG);
    let mut player = Player::start(&server.url("demo"), None, Duration::from_secs(60));
    let mut publisher = publish(
        "h264-baseline-aac.mp4",
        &server.url("cam"),
        Duration::from_secs(60),
    );
    let raw = Client::play(server.addr, "demo").into_recorder();
    assert!(
        player.wait_frames(Kind::Video, 25, Duration::from_secs(15)),
        "the player decoded nothing"
    );
    assert!(server.wait_log("publish started stream=cam", Duration::from_secs(10)));

    let signalled = Instant::now();
    let fin = server.terminate(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(
        !fin.timed_out(),
        "the server did not exit within 10 s of SIGTERM"
    );
    assert!(
        fin.success(),
        "the server exited with {:?}; log:\n{}",
        fin.status,
        fin.stderr
    );
    // The drain period is 5 s; connected peers that read must not stretch it.
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(fin.stderr.contains("shutting down"), "no shutdown log line");
    assert!(fin.stderr.contains("stopped"), "no final log line");

    // Every peer saw the end and exited by itself.
    let p = player.finish(Duration::from_secs(10));
    assert!(
        !p.timed_out(),
        "the ffmpeg player hung after the server shut down"
    );
    let q = publisher.wait(Duration::from_secs(10));
    assert!(
        !q.timed_out(),
        "the ffmpeg publisher hung after the server shut down"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !raw.ended() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(raw.ended(), "the raw player's connection was not closed");
    eprintln!(
        "shutdown took {took:?}; player exit {:?}, publisher exit {:?}",
        p.status, q.status
    );
}

/// A player whose socket is full (it stopped reading while a publisher sends faster than real
/// time): the server must not wait for it longer than its drain period.
fn server_with_a_stalled_player() -> (Server, common::Proc, Client) {
    let server = Server::start("[rtmp]\nlisten = \"127.0.0.1:0\"\n");
    let publisher = publish_fast(
        "h264-main-3mbps-aac.mp4",
        &server.url("fast"),
        Duration::from_secs(60),
    );
    assert!(server.wait_log("publish started stream=fast", Duration::from_secs(10)));
    let stalled = Client::play(server.addr, "fast");
    std::thread::sleep(Duration::from_secs(2)); // its socket buffers fill up
    (server, publisher, stalled)
}

#[test]
fn a_stalled_player_does_not_hold_shutdown_past_the_drain_period() {
    let (mut server, _publisher, _stalled) = server_with_a_stalled_player();
    let signalled = Instant::now();
    let fin = server.terminate(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(
        !fin.timed_out(),
        "the server did not exit within 10 s of SIGTERM"
    );
    assert!(fin.success(), "exit {:?}:\n{}", fin.status, fin.stderr);
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    eprintln!("shutdown with a stalled player took {took:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut server, _publisher, _stalled) = server_with_a_stalled_player();
    let pid = server.pid() as libc::pid_t;
    // SAFETY: kill(2) has no memory effects; the server is our running, unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let first = Instant::now();
    // On a loaded machine (the publisher floods the server) this can take a second or two.
    assert!(
        server.wait_log("shutting down", Duration::from_secs(10)),
        "first signal not seen"
    );
    eprintln!("first signal logged after {:?}", first.elapsed());
    let second = Instant::now();
    let fin = server.terminate(Duration::from_secs(5));
    let took = second.elapsed();
    assert!(
        !fin.timed_out(),
        "the server did not exit after a second signal"
    );
    eprintln!("exit {:?} {took:?} after the second signal", fin.status);
    if fin.stderr.contains("second signal") {
        assert_eq!(
            fin.status.and_then(|s| s.code()),
            Some(130),
            "{}",
            fin.stderr
        );
        // "At once" is the exit code and the log line; the time only rules out a hang.
        assert!(
            took < Duration::from_secs(3),
            "exit took {took:?} after the second signal"
        );
    } else {
        // The drain finished before the second signal arrived: nothing to test this time.
        assert!(fin.success(), "{}", fin.stderr);
        eprintln!("NOTE: the drain finished before the second signal; exit at once not exercised");
    }
}
