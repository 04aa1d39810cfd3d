//! The config contract from the command line: a wrong key is refused with its name and line;
//! what `--print-config` prints is a valid config.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ffprobe, Proc, Server};

fn moment(args: &[&str]) -> common::Finished {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moment"));
    cmd.args(args).env_remove("RUST_LOG");
    Proc::spawn("moment", cmd, Duration::from_secs(20)).wait(Duration::from_secs(20))
}

#[test]
fn unknown_key_is_refused_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\nhandshake_timeout = 3\n\n[[file]]\nname = \"demo\"\n",
    )
    .unwrap();
    let fin = moment(&["--config", path.to_str().unwrap()]);
    assert!(!fin.timed_out(), "moment with a bad config did not exit");
    assert!(!fin.success(), "moment accepted an unknown key");
    assert!(
        fin.stderr.contains("handshake_timeout"),
        "key not named: {}",
        fin.stderr
    );
    assert!(
        fin.stderr.contains("line 3"),
        "line not named: {}",
        fin.stderr
    );
    assert!(
        fin.stderr.contains("bad.toml"),
        "file not named: {}",
        fin.stderr
    );
    assert!(!fin.stderr.contains("RTMP listening"), "it started anyway");
}

#[test]
fn wrong_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[hub.player]\nsoft_bytes = 9\nhard_bytes = 1\n",
    )
    .unwrap();
    let fin = moment(&["--config", path.to_str().unwrap()]);
    assert!(
        !fin.timed_out() && !fin.success(),
        "accepted soft_bytes > hard_bytes"
    );
    assert!(fin.stderr.contains("soft_bytes"), "{}", fin.stderr);
}

#[test]
fn print_config_is_a_valid_config() {
    let fin = moment(&["--print-config"]);
    assert!(fin.success(), "--print-config failed: {}", fin.stderr);
    let printed = fin.stdout;
    assert!(
        printed.contains("[rtmp]") && printed.contains("[[file]]"),
        "{printed}"
    );
    // Fed back as is, except the port (1935 may be taken): the one line a user changes first.
    let default_listen = "listen = \"127.0.0.1:1935\"";
    assert_eq!(printed.matches(default_listen).count(), 1, "{printed}");
    let config = printed.replace(default_listen, "listen = \"127.0.0.1:0\"");
    let server = Server::start(&config);
    let streams = ffprobe(&server.url("demo"), Duration::from_secs(20));
    assert!(
        streams.iter().any(|s| s.codec_name == "h264")
            && streams.iter().any(|s| s.codec_name == "aac"),
        "{streams:?}"
    );
}
