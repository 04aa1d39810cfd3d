// Shared by the pages: the token (from ?token=, carried into every URL and API call) and
// formatting.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token");
const withToken = (url) => TOKEN ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : url;
async function api(path) {
  const r = await fetch(path, { headers: TOKEN ? { Authorization: "Bearer " + TOKEN } : {} });
  if (!r.ok) {
    const e = new Error(path + ": " + r.status);
    e.status = r.status;
    throw e;
  }
  return r.json();
}
function bps(v) {
  if (v == null) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + " Mbit/s";
  return Math.round(v / 1e3) + " kbit/s";
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function showError(msg) {
  const e = document.getElementById("error");
  e.textContent = msg;
  e.hidden = !msg;
}
