//! `/metrics`: a [`Snapshot`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Names follow the Prometheus conventions: a `moment_` prefix, base units in the name
//! (`_bytes`, `_seconds`), `_total` on counters, one HELP and one TYPE line per family, and
//! label values escaped. Counters are the primary data (use `rate()` on them); the
//! `*_bytes_per_second` gauges are the server's own 5-second rates, the same as the JSON API's.

use std::fmt::Write as _;

use super::view::{Snapshot, StreamView};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric family being written: its samples, written out by [`Exposition::add`] only if it
/// has some.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: String,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        debug_assert!(valid_name(name), "{name}");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        Family {
            name,
            help,
            kind,
            samples: String::new(),
        }
    }

    /// Adds a sample. Label names must be valid (they are literals here); values are escaped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Family {
        self.samples.push_str(self.name);
        if !labels.is_empty() {
            self.samples.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(name) && !name.contains(':'), "{name}");
                if i > 0 {
                    self.samples.push(',');
                }
                self.samples.push_str(name);
                self.samples.push_str("=\"");
                escape_label_value(value, &mut self.samples);
                self.samples.push('"');
            }
            self.samples.push('}');
        }
        self.samples.push(' ');
        value.into().write(&mut self.samples);
        self.samples.push('\n');
        self
    }
}

/// A sample value: integers print exactly, floats as Prometheus reads them.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as u64)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u8> for Value {
    fn from(v: u8) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl Value {
    fn write(self, out: &mut String) {
        match self {
            Value::Int(v) => write!(out, "{v}").expect("writing to a String"),
            Value::Float(v) if v.is_nan() => out.push_str("NaN"),
            Value::Float(v) if v == f64::INFINITY => out.push_str("+Inf"),
            Value::Float(v) if v == f64::NEG_INFINITY => out.push_str("-Inf"),
            Value::Float(v) => write!(out, "{v}").expect("writing to a String"),
        }
    }
}

/// The text being built.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Appends a family with its HELP and TYPE lines; a family without samples is left out.
    pub fn add(&mut self, family: Family) {
        if family.samples.is_empty() {
            return;
        }
        self.out.push_str("# HELP ");
        self.out.push_str(family.name);
        self.out.push(' ');
        escape_help(family.help, &mut self.out);
        self.out.push('\n');
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        writeln!(self.out, "# TYPE {} {kind}", family.name).expect("writing to a String");
        self.out.push_str(&family.samples);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed.
pub fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders the whole exposition.
pub fn render(snap: &Snapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut x = Exposition::default();
    let t = &snap.totals;

    let mut f = Family::new("moment_build_info", Gauge, "The server's version.");
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
    x.add(f);
    let mut f = Family::new(
        "moment_uptime_seconds",
        Gauge,
        "Seconds since the server started.",
    );
    f.sample(&[], t.uptime_s);
    x.add(f);

    let pages: [(&'static str, &'static str, u64); 5] = [
        (
            "moment_pages_held_bytes",
            "Bytes of pages (or blocks) charged to streams, headers and unused space included.",
            t.pages.held_bytes,
        ),
        (
            "moment_pages_live_bytes",
            "Payload bytes of live messages in all streams' pages.",
            t.pages.live_bytes,
        ),
        (
            "moment_pages_pooled",
            "Free pages kept for reuse (not in moment_pages_held_bytes).",
            t.pages.pooled_pages,
        ),
        (
            "moment_pages_pooled_bytes",
            "Bytes of the free pages kept for reuse.",
            t.pages.pooled_bytes,
        ),
        (
            "moment_pages_budget_bytes",
            "Bytes all streams together may hold in pages ([pages] global_budget_bytes).",
            t.pages.budget_bytes,
        ),
    ];
    for (name, help, v) in pages {
        let mut f = Family::new(name, Gauge, help);
        f.sample(&[], v);
        x.add(f);
    }
    let mut f = Family::new(
        "moment_streams",
        Gauge,
        "Streams known to the server (publishing, played, holding pages, or configured cameras).",
    );
    f.sample(&[], snap.streams.len());
    x.add(f);

    let r = &t.rtmp;
    let mut f = Family::new(
        "moment_connections",
        Gauge,
        "Open connections by protocol and role (an RTMP connection is \"other\" until it publishes or plays).",
    );
    f.sample(&[("protocol", "rtmp"), ("role", "publisher")], r.publishers)
        .sample(&[("protocol", "rtmp"), ("role", "player")], r.players)
        .sample(
            &[("protocol", "rtmp"), ("role", "other")],
            r.connections.saturating_sub(r.publishers + r.players),
        )
        .sample(&[("protocol", "http"), ("role", "api")], t.http_connections);
    x.add(f);
    let mut f = Family::new(
        "moment_connections_refused_total",
        Counter,
        "Connections closed at once because the connection limit was reached.",
    );
    f.sample(&[("protocol", "rtmp")], r.refused);
    x.add(f);
    let mut f = Family::new(
        "moment_sent_bytes_total",
        Counter,
        "Bytes written to sockets, all connections of a protocol.",
    );
    f.sample(&[("protocol", "rtmp")], r.bytes_sent);
    x.add(f);
    let mut f = Family::new(
        "moment_received_bytes_total",
        Counter,
        "Bytes read from sockets, all connections of a protocol.",
    );
    f.sample(&[("protocol", "rtmp")], r.bytes_received);
    x.add(f);
    let mut f = Family::new(
        "moment_transcoders_dropped_frames_total",
        Counter,
        "Frames dropped by all transcoders because they fell behind.",
    );
    f.sample(&[], t.transcoder_dropped_frames);
    x.add(f);

    render_streams(&mut x, &snap.streams);
    render_records(&mut x, &snap.records);
    render_hls(&mut x, snap);
    x.finish()
}

/// `moment_hls_*`: requests by kind (count origin fetches behind a cache with these), bytes,
/// viewers and muxer memory per stream, blocking requests.
fn render_hls(x: &mut Exposition, snap: &Snapshot) {
    use Kind::{Counter, Gauge};
    let Some(c) = &snap.hls_counters else {
        return;
    };
    let mut f = Family::new(
        "moment_hls_requests_total",
        Counter,
        "HLS requests, by kind (playlist, blocking playlist, part, segment, init).",
    );
    for (kind, v) in [
        ("playlist", c.playlist_requests),
        ("blocking", c.blocking_requests),
        ("part", c.part_requests),
        ("segment", c.segment_requests),
        ("init", c.init_requests),
    ] {
        f.sample(&[("kind", kind)], v);
    }
    x.add(f);
    let mut f = Family::new(
        "moment_hls_bytes_served_total",
        Counter,
        "Bytes of playlists and media served over HLS.",
    );
    f.sample(&[], c.bytes_served);
    x.add(f);
    let mut f = Family::new(
        "moment_hls_blocking_waiting",
        Gauge,
        "Blocking playlist requests waiting for a part now.",
    );
    f.sample(&[], c.blocking_waiting);
    x.add(f);
    let mut f = Family::new(
        "moment_hls_blocking_refused_total",
        Counter,
        "Blocking playlist requests refused over the bounds (503).",
    );
    f.sample(&[], c.blocking_refused);
    x.add(f);
    let mut f = Family::new(
        "moment_hls_blocking_timed_out_total",
        Counter,
        "Blocking playlist requests answered at their timeout, without the part.",
    );
    f.sample(&[], c.blocking_timed_out);
    x.add(f);
    let mut f = Family::new(
        "moment_hls_muxers_started_total",
        Counter,
        "HLS muxers started (by a first request).",
    );
    f.sample(&[], c.muxers_started);
    x.add(f);
    let mut viewers = Family::new("moment_hls_viewers", Gauge, "Client addresses that asked for a stream's playlist in the last 10 s (a cache in front counts as its connections).");
    let mut bytes = Family::new(
        "moment_hls_muxer_bytes",
        Gauge,
        "Bytes a stream's HLS muxer holds (its segments, parts and init segments).",
    );
    for m in &snap.hls {
        viewers.sample(&[("stream", &m.stream)], m.viewers);
        bytes.sample(&[("stream", &m.stream)], m.bytes);
    }
    x.add(viewers);
    x.add(bytes);
}

/// `moment_record_*`: one sample per `[[record]]` entry, labelled with its `stream` (a name
/// or `*`) and `path`.
fn render_records(x: &mut Exposition, records: &[crate::record::library::EntryStatus]) {
    use crate::record::library::EntryStatus;
    use Kind::{Counter, Gauge};
    type Get = fn(&EntryStatus) -> Option<u64>;
    let families: [(&'static str, Kind, &'static str, Get); 11] = [
        ("moment_record_bytes_written_total", Counter, "Bytes written to segment files.", |r| Some(r.bytes_written)),
        ("moment_record_segments_written_total", Counter, "Segment files started.", |r| Some(r.segments_written)),
        ("moment_record_parts_written_total", Counter, "Parts (moof + mdat) written.", |r| Some(r.parts_written)),
        ("moment_record_dropped_frames_total", Counter, "Frames not recorded: the disk fell behind (dropped to the next keyframe) or a write failed.", |r| Some(r.dropped_frames)),
        ("moment_record_skipped_frames_total", Counter, "Frames not placed in a segment (before its first keyframe, or of a codec that is not recorded).", |r| Some(r.skipped_frames)),
        ("moment_record_write_errors_total", Counter, "Writes that failed (full disk, unwritable path).", |r| Some(r.write_errors)),
        ("moment_record_segments_deleted_total", Counter, "Segments deleted by retention.", |r| Some(r.segments_deleted)),
        ("moment_record_bytes_deleted_total", Counter, "Bytes deleted by retention.", |r| Some(r.bytes_deleted)),
        ("moment_record_segments", Gauge, "Segments the entry holds.", |r| Some(r.segments)),
        ("moment_record_bytes", Gauge, "Bytes the entry holds.", |r| Some(r.bytes)),
        ("moment_record_disk_free_bytes", Gauge, "Free bytes on the entry's disk at the last retention pass.", |r| r.disk_free_bytes),
    ];
    for (name, kind, help, get) in families {
        let mut f = Family::new(name, kind, help);
        for r in records {
            if let Some(v) = get(r) {
                f.sample(&[("stream", &r.stream), ("path", &r.path)], v);
            }
        }
        x.add(f);
    }
    let mut f = Family::new(
        "moment_record_streams_recording",
        Gauge,
        "Streams the entry is writing now.",
    );
    for r in records {
        f.sample(
            &[("stream", &r.stream), ("path", &r.path)],
            r.recording.len(),
        );
    }
    x.add(f);
}

/// A per-stream family: `value` gives the sample of a stream, or `None` to leave it out.
fn per_stream<V: Into<Value>>(
    x: &mut Exposition,
    streams: &[StreamView],
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: impl Fn(&StreamView) -> Option<V>,
) {
    let mut f = Family::new(name, kind, help);
    for s in streams {
        if let Some(v) = value(s) {
            f.sample(&[("stream", &s.name)], v);
        }
    }
    x.add(f);
}

fn render_streams(x: &mut Exposition, streams: &[StreamView]) {
    use Kind::{Counter, Gauge};
    let mut f = Family::new(
        "moment_stream_info",
        Gauge,
        "Always 1: a stream's source kind and codecs as labels (empty when unknown).",
    );
    for s in streams {
        let video = s.video.as_ref().map_or("", |v| v.codec.as_str());
        let audio = s.audio.as_ref().map_or("", |a| a.codec.as_str());
        f.sample(
            &[
                ("stream", &s.name),
                ("source", s.source.unwrap_or("")),
                ("video_codec", video),
                ("audio_codec", audio),
            ],
            1u64,
        );
    }
    x.add(f);
    per_stream(
        x,
        streams,
        "moment_stream_publishing",
        Gauge,
        "1 while a source publishes the stream.",
        |s| Some(s.publishing),
    );
    per_stream(
        x,
        streams,
        "moment_stream_uptime_seconds",
        Gauge,
        "Seconds since the stream's current source started publishing.",
        |s| s.uptime_s,
    );
    per_stream(
        x,
        streams,
        "moment_stream_video_width_pixels",
        Gauge,
        "Displayed picture width, from the H.264 sequence header.",
        |s| s.video.as_ref().and_then(|v| v.width),
    );
    per_stream(
        x,
        streams,
        "moment_stream_video_height_pixels",
        Gauge,
        "Displayed picture height, from the H.264 sequence header.",
        |s| s.video.as_ref().and_then(|v| v.height),
    );
    per_stream(
        x,
        streams,
        "moment_stream_audio_sample_rate_hertz",
        Gauge,
        "Audio sampling rate, from the AAC sequence header.",
        |s| s.audio.as_ref().and_then(|a| a.sample_rate),
    );
    per_stream(
        x,
        streams,
        "moment_stream_audio_channels",
        Gauge,
        "Audio channels, from the AAC sequence header.",
        |s| s.audio.as_ref().and_then(|a| a.channels),
    );
    per_stream(
        x,
        streams,
        "moment_stream_received_frames_total",
        Counter,
        "Frames received from the stream's sources.",
        |s| Some(s.frames_in),
    );
    per_stream(
        x,
        streams,
        "moment_stream_received_bytes_total",
        Counter,
        "Payload bytes received from the stream's sources.",
        |s| Some(s.bytes_in),
    );
    per_stream(
        x,
        streams,
        "moment_stream_input_bytes_per_second",
        Gauge,
        "Payload bytes per second in, averaged over the last 5 seconds.",
        |s| s.bitrate_in_bps.map(|b| b / 8),
    );
    per_stream(
        x,
        streams,
        "moment_stream_players",
        Gauge,
        "Players subscribed to the stream.",
        |s| Some(s.players.len()),
    );
    per_stream(
        x,
        streams,
        "moment_stream_saver_frames",
        Gauge,
        "Frames in the stream's frame saver (GOP cache).",
        |s| Some(s.saver.frames),
    );
    per_stream(
        x,
        streams,
        "moment_stream_saver_bytes",
        Gauge,
        "Payload bytes in the stream's frame saver (GOP cache).",
        |s| Some(s.saver.bytes),
    );
    per_stream(
        x,
        streams,
        "moment_stream_page_held_bytes",
        Gauge,
        "Bytes of pages charged to the stream.",
        |s| Some(s.pages.held_bytes),
    );
    per_stream(
        x,
        streams,
        "moment_stream_page_live_bytes",
        Gauge,
        "Payload bytes of the stream's live messages.",
        |s| Some(s.pages.live_bytes),
    );
    per_stream(
        x,
        streams,
        "moment_stream_page_budget_bytes",
        Gauge,
        "Bytes the stream may hold in pages.",
        |s| (s.pages.budget_bytes > 0).then_some(s.pages.budget_bytes),
    );
    per_stream(
        x,
        streams,
        "moment_stream_players_kicked_total",
        Counter,
        "Players the hub disconnected (too slow, or on request).",
        |s| Some(s.players_kicked),
    );

    let mut f = Family::new(
        "moment_stream_dropped_frames_total",
        Counter,
        "Frames dropped, by reason: for players over their queue bounds (disposable, inter, resync, audio), or at ingest (page budget full).",
    );
    for s in streams {
        for (reason, n) in s.dropped.by_reason() {
            f.sample(&[("stream", &s.name), ("reason", reason)], n);
        }
    }
    x.add(f);

    per_stream(
        x,
        streams,
        "moment_camera_connected",
        Gauge,
        "1 while the camera's RTSP session is up.",
        |s| s.camera.as_ref().map(|c| c.connected),
    );
    per_stream(
        x,
        streams,
        "moment_camera_reconnects_total",
        Counter,
        "Camera sessions started after the first one.",
        |s| s.camera.as_ref().map(|c| c.reconnects),
    );

    let mut rtp = Family::new(
        "moment_camera_rtp_packets_total",
        Counter,
        "RTP packets from cameras, by outcome: received (in order), lost, reordered (put back in place), late and duplicate (dropped), damaged (in an access unit that was dropped).",
    );
    for s in streams {
        if let Some(c) = &s.camera {
            let r = &c.rtp;
            for (kind, n) in [
                ("received", r.received),
                ("lost", r.lost),
                ("reordered", r.reordered),
                ("late", r.late),
                ("duplicate", r.duplicates),
                ("damaged", r.damaged),
            ] {
                rtp.sample(&[("stream", &s.name), ("kind", kind)], n);
            }
        }
    }
    x.add(rtp);
    per_stream(
        x,
        streams,
        "moment_camera_receiver_reports_total",
        Counter,
        "RTCP receiver reports sent to UDP cameras.",
        |s| s.camera.as_ref().map(|c| c.rtp.receiver_reports),
    );
    per_stream(
        x,
        streams,
        "moment_camera_frames_dropped_after_loss_total",
        Counter,
        "Video frames dropped after RTP loss until the next keyframe (the session goes on).",
        |s| s.camera.as_ref().map(|c| c.rtp.frames_dropped_after_loss),
    );

    let mut depth = Family::new(
        "moment_transcoder_queue_frames",
        Gauge,
        "Frames waiting in a transcoder's input queue.",
    );
    let mut bytes = Family::new(
        "moment_transcoder_queue_bytes",
        Gauge,
        "Payload bytes waiting in a transcoder's input queue.",
    );
    let mut dropped = Family::new(
        "moment_transcoder_dropped_frames_total",
        Counter,
        "Frames a transcoder dropped because it fell behind.",
    );
    let mut running = Family::new(
        "moment_transcoder_running",
        Gauge,
        "1 while a rendition runs (it runs only while it has players).",
    );
    let mut runs = Family::new(
        "moment_transcoder_runs_total",
        Counter,
        "Times a rendition was started.",
    );
    let mut frames_out = Family::new(
        "moment_transcoder_frames_out_total",
        Counter,
        "Frames a rendition encoded.",
    );
    let mut decode_errors = Family::new(
        "moment_transcoder_decode_errors_total",
        Counter,
        "Source frames a rendition's decoder refused (it resumes at the next keyframe).",
    );
    let mut skipped = Family::new(
        "moment_transcoder_encoder_skipped_frames_total",
        Counter,
        "Frames a rendition's encoder skipped to hold its bit rate.",
    );
    let mut cpu = Family::new(
        "moment_transcoder_cpu_seconds_total",
        Counter,
        "CPU time a rendition's codec threads used.",
    );
    for s in streams {
        for t in &s.transcoders {
            let labels = [("stream", s.name.as_str()), ("transcoder", t.name.as_str())];
            depth.sample(&labels, t.queue_frames);
            bytes.sample(&labels, t.queue_bytes);
            dropped.sample(&labels, t.dropped_frames);
            if let Some(v) = t.running {
                running.sample(&labels, v);
            }
            if let Some(v) = t.runs {
                runs.sample(&labels, v);
            }
            if let Some(v) = t.frames_out {
                frames_out.sample(&labels, v);
            }
            if let Some(v) = t.decode_errors {
                decode_errors.sample(&labels, v);
            }
            if let Some(v) = t.encoder_skipped {
                skipped.sample(&labels, v);
            }
            if let Some(v) = t.cpu_seconds {
                cpu.sample(&labels, Value::Float(v));
            }
        }
    }
    x.add(depth);
    x.add(bytes);
    x.add(dropped);
    x.add(running);
    x.add(runs);
    x.add(frames_out);
    x.add(decode_errors);
    x.add(skipped);
    x.add(cpu);

    render_players(x, streams);
}

fn render_players(x: &mut Exposition, streams: &[StreamView]) {
    use Kind::{Counter, Gauge};
    let mut frames = Family::new(
        "moment_player_sent_frames_total",
        Counter,
        "Frames a player was sent.",
    );
    let mut bytes = Family::new(
        "moment_player_sent_bytes_total",
        Counter,
        "Payload bytes a player was sent.",
    );
    let mut rate = Family::new(
        "moment_player_output_bytes_per_second",
        Gauge,
        "Payload bytes per second a player was sent, averaged over the last 5 seconds.",
    );
    let mut queued = Family::new(
        "moment_player_queued_bytes",
        Gauge,
        "Payload bytes waiting in a player's hub queue.",
    );
    let mut queued_frames = Family::new(
        "moment_player_queued_frames",
        Gauge,
        "Frames waiting in a player's hub queue.",
    );
    let mut dropped = Family::new(
        "moment_player_dropped_frames_total",
        Counter,
        "Frames dropped for a player over its queue bounds, by reason.",
    );
    for s in streams {
        for p in &s.players {
            let id = p.id.to_string();
            let labels = [("stream", s.name.as_str()), ("player", id.as_str())];
            frames.sample(&labels, p.frames_sent);
            bytes.sample(&labels, p.bytes_sent);
            if let Some(b) = p.bitrate_out_bps {
                rate.sample(&labels, b / 8);
            }
            queued.sample(&labels, p.queued_bytes);
            queued_frames.sample(&labels, p.queued_frames);
            let d = p.dropped;
            for (reason, n) in [
                ("disposable", d.disposable),
                ("inter", d.inter),
                ("resync", d.resync),
                ("audio", d.audio),
            ] {
                dropped.sample(
                    &[
                        ("stream", s.name.as_str()),
                        ("player", id.as_str()),
                        ("reason", reason),
                    ],
                    n,
                );
            }
        }
    }
    for f in [frames, bytes, rate, queued, queued_frames, dropped] {
        x.add(f);
    }
}
