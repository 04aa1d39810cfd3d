// The player page: live over LL-HLS (hls.js, or native HLS on Safari), the stream's facts,
// and, where it is recorded, a timeline of its spans that plays /recordings/... ranges.
// #status holds what the tests read: currentTime, errors, latency, mode.
"use strict";
const stream = decodeURIComponent(location.pathname.replace(/^\/watch\//, ""));
const video = document.getElementById("video");
const status = { stream, errors: [], latency: null, currentTime: 0, mode: "live", engine: null };
let hls = null;
document.title = stream + " · moment";
document.getElementById("title").textContent = stream;
document.getElementById("home").href = withToken("/");

function playLive() {
  status.mode = "live";
  document.getElementById("mode").textContent = "live";
  const src = withToken("/hls/" + encodeURIComponent(stream) + "/index.m3u8");
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    status.engine = "hls.js " + Hls.version;
    hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2, backBufferLength: 30 });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (d.fatal) {
        status.errors.push(d.type + ": " + d.details);
        showError("Playback error: " + d.details + (d.response ? " (" + d.response.code + ")" : ""));
        if (d.type === Hls.ErrorTypes.NETWORK_ERROR) setTimeout(playLive, 2000);
        else if (d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      }
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    status.engine = "native HLS";
    video.src = src;
  } else {
    showError("This browser plays neither HLS nor MSE.");
  }
  document.getElementById("engine").textContent = status.engine || "–";
  video.play().catch(() => {});
}

function playRecording(startMs, durationS) {
  if (hls) { hls.destroy(); hls = null; }
  status.mode = "recording";
  const start = new Date(startMs).toISOString();
  document.getElementById("mode").textContent = "recording from " + start.replace("T", " ").replace(/\.\d+Z$/, " UTC");
  video.src = withToken("/recordings/" + encodeURIComponent(stream) + ".mp4?start=" + start + "&duration=" + durationS);
  video.play().catch(() => {});
}

video.addEventListener("error", () => {
  if (video.error) status.errors.push("video: " + video.error.code + " " + (video.error.message || ""));
});
document.getElementById("live").onclick = playLive;

setInterval(() => {
  status.currentTime = video.currentTime;
  status.latency = hls && hls.latency ? hls.latency : null;
  const b = video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0;
  document.getElementById("latency").textContent = status.mode === "live" && status.latency != null ? status.latency.toFixed(2) + " s" : "–";
  document.getElementById("buffer").textContent = b.toFixed(2) + " s";
  document.getElementById("status").textContent = JSON.stringify(status);
}, 250);

async function facts() {
  try {
    const s = await api("/api/streams/" + encodeURIComponent(stream));
    const rows = [
      ["source", s.source || "–"],
      ["video", s.video ? s.video.codec + " " + (s.video.width || "?") + "×" + (s.video.height || "?") : "none"],
      ["audio", s.audio ? s.audio.codec + " " + (s.audio.sample_rate || "?") + " Hz" : "none"],
      ["bitrate in", bps(s.bitrate_in_bps)],
      ["RTMP players", String(s.players.length)],
      ["recording", s.recording ? "yes" : "no"],
    ];
    if (s.camera) rows.push(["camera", s.camera.state]);
    document.getElementById("facts").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  } catch (e) {
    if (e.status === 404) showError("No stream named " + stream + ".");
  }
}

async function timeline() {
  let j;
  try { j = await api("/api/recordings/" + encodeURIComponent(stream)); } catch (e) { return; }
  if (!j.spans.length) return;
  const spans = j.spans.map((s) => [Date.parse(s.start), Date.parse(s.end)]);
  const to = Math.max(...spans.map((s) => s[1]));
  const from = Math.max(Math.min(...spans.map((s) => s[0])), to - 24 * 3600e3);
  const width = Math.max(to - from, 1);
  const bar = document.getElementById("bar");
  bar.replaceChildren(...spans.filter((s) => s[1] > from).map(([a, b]) => {
    const d = el("div", { class: "span", title: new Date(a).toISOString() + " – " + new Date(b).toISOString() });
    d.style.left = ((Math.max(a, from) - from) / width * 100) + "%";
    d.style.width = ((b - Math.max(a, from)) / width * 100) + "%";
    return d;
  }));
  bar.onclick = (ev) => {
    const r = bar.getBoundingClientRect();
    let t = from + (ev.clientX - r.left) / r.width * width;
    const span = spans.find(([a, b]) => t >= a && t < b) || spans.find(([a]) => a > t);
    if (!span) return;
    t = Math.max(t, span[0]);
    playRecording(t, Math.min(3600, Math.max(10, (span[1] - t) / 1000)));
  };
  const fmt = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  document.getElementById("axis").replaceChildren(el("span", {}, fmt(from)), el("span", {}, fmt(to) + " UTC"));
  document.getElementById("range").textContent = "recordings: " + spans.length + (spans.length === 1 ? " span" : " spans");
  document.getElementById("timeline").hidden = false;
}

playLive();
facts();
timeline();
setInterval(facts, 3000);
setInterval(timeline, 5000);
