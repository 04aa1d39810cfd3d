// The dashboard: every stream as a card, refreshed every 2 s (snapshots every 5 s).
"use strict";
const grid = document.getElementById("streams");
let snapTick = 0;

function card(s) {
  const badges = el("div", { class: "badges" });
  badges.append(el("span", { class: "badge " + (s.publishing ? "live" : "off") }, s.publishing ? "● live" : "offline"));
  if (s.recording) badges.append(el("span", { class: "badge rec" }, "● REC"));
  if (s.camera && s.camera.state !== "playing") {
    badges.append(el("span", { class: "badge " + (s.camera.state === "backoff" ? "bad" : "warn") }, "camera " + s.camera.state));
  }
  const thumb = el("div", { class: "thumb" });
  if (s.publishing && s.video) {
    const img = el("img", { alt: s.name, loading: "lazy", src: withToken("/snapshot/" + encodeURIComponent(s.name) + ".jpg?t=" + snapTick) });
    img.onerror = () => img.replaceWith("no picture yet");
    thumb.append(img);
  } else {
    thumb.append(s.publishing ? "audio only" : "no signal");
  }
  thumb.append(badges);
  const v = s.video ? s.video.codec + (s.video.width ? " " + s.video.width + "×" + s.video.height : "") : "no video";
  const a = s.audio ? s.audio.codec + (s.audio.sample_rate ? " " + s.audio.sample_rate / 1000 + " kHz" : "") : "no audio";
  const meta = el("div", { class: "meta" },
    el("span", {}, el("b", {}, v)), el("span", {}, el("b", {}, a)),
    el("span", {}, "in ", el("b", {}, bps(s.bitrate_in_bps))),
    el("span", {}, el("b", {}, String(s.players.length)), s.players.length === 1 ? " player" : " players"));
  const name = el("div", { class: "name" }, s.name, el("span", { class: "src" }, s.source || ""));
  return el("a", { class: "card", href: withToken("/watch/" + encodeURIComponent(s.name)), "data-stream": s.name },
    thumb, el("div", { class: "info" }, name, meta));
}

async function refresh() {
  try {
    const j = await api("/api/streams");
    showError("");
    const live = j.streams.filter((s) => s.publishing).length;
    document.getElementById("summary").textContent =
      j.streams.length + " streams, " + live + " live, " + j.streams.reduce((n, s) => n + s.players.length, 0) + " players";
    grid.replaceChildren(...j.streams.map(card));
    if (!j.streams.length) grid.replaceChildren(el("div", { class: "empty" }, "No streams yet: publish one to rtmp://HOST/live/NAME."));
  } catch (e) {
    showError(e.status === 401 ? "This server needs a token: open /?token=…" : "Cannot reach the API: " + e.message);
  }
}
refresh();
setInterval(refresh, 2000);
setInterval(() => { snapTick++; }, 5000);
