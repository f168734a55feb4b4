// The dashboard's page (server/dashboard.h): one HTML file with its CSS and JavaScript, in the
// binary so that the server needs no install path. Charts are plain SVG, so nothing is loaded
// from elsewhere and there is no build step. Script errors are collected into
// window.__errors and shown in #errors, where tests/dashboard_test.cc reads them. The admin
// panel acts on the selected device through the POST routes, with the token the page holds.
#include "server/dashboard.h"

namespace sd {

const char kDashboardPage[] = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>streamdistill dashboard</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #f4f5f7; }
  header { background: #263238; color: #fff; padding: 0.6em 1em; display: flex; flex-wrap: wrap;
           justify-content: space-between; align-items: baseline; gap: 0.5em; }
  header h1 { font-size: 1.2em; margin: 0; }
  main { padding: 0.8em; max-width: 1400px; margin: 0 auto; }
  section { background: #fff; border-radius: 6px; padding: 0.8em; margin-bottom: 0.8em;
            box-shadow: 0 1px 2px rgba(0,0,0,0.1); }
  h2 { font-size: 1.05em; margin: 0 0 0.5em; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
  th, td { text-align: left; padding: 0.35em 0.5em; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
  tbody tr.device { cursor: pointer; }
  tbody tr.device:hover, tbody tr.selected { background: #e8f0fe; }
  .on { color: #1b7f3b; font-weight: 600; } .off { color: #9e9e9e; }
  .up { color: #1b7f3b; } .down { color: #c62828; }
  .discarded { color: #c62828; }
  td.why { white-space: normal; min-width: 12em; }
  /* minmax(0, ...): a wide table scrolls inside its column instead of widening the page */
  .grid { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 0.8em; }
  @media (max-width: 800px) { .grid { grid-template-columns: minmax(0, 1fr); } th, td { padding: 0.3em; } }
  svg.chart { width: 100%; height: auto; }
  .chart .axis { stroke: #999; stroke-width: 1; }
  .chart .line { fill: none; stroke: #1565c0; stroke-width: 2; }
  .chart .point { fill: #1565c0; }
  .chart text { font-size: 11px; fill: #555; }
  .frames { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 0.6em; }
  figure { margin: 0; position: relative; }
  figure img { width: 100%; display: block; border-radius: 4px; }
  figure svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
  figure svg rect { fill: none; stroke: #ffeb3b; stroke-width: 2; vector-effect: non-scaling-stroke; }
  figure svg text { fill: #ffeb3b; font-size: 14px; paint-order: stroke; stroke: #000; stroke-width: 3px; }
  figcaption { font-size: 0.8em; color: #555; }
  #status { font-size: 0.85em; opacity: 0.85; }
  #errors:empty { display: none; }
  #errors { color: #c62828; white-space: pre-wrap; }
  .admin { display: flex; flex-wrap: wrap; gap: 0.4em; align-items: center; }
  .admin input { width: 5em; }
  .pinned { color: #6a1b9a; font-weight: 600; } .paused { color: #e65100; font-weight: 600; }
  #action-result.failed { color: #c62828; }
</style>
</head>
<body>
<header><h1>streamdistill dashboard</h1><span id="status">loading</span></header>
<main>
  <section id="errors"></section>
  <section>
    <h2>Fleet</h2>
    <div class="scroll"><table id="fleet">
      <thead><tr><th>Device</th><th>Connected</th><th>Served / published</th><th>Held-out mAP50</th>
        <th>Frames</th><th>Budget, frames/min: asked / told (why)</th><th>Agreement</th><th>Last round</th>
        <th>kbit/s in / out</th><th>Group</th><th>Admin</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <div id="detail" hidden>
    <section><h2 id="admin-title">Admin</h2><div class="admin">
      <label>version <input id="pin-version" type="number" min="1" step="1"></label>
      <button data-action="pin">Pin</button><button data-action="rollback">Roll back</button>
      <button data-action="unpin">Unpin</button><button data-action="train">Train now</button>
      <button data-action="pause">Pause</button><button data-action="resume">Resume</button>
      <span id="action-result"></span></div></section>
    <div class="grid">
      <section><h2 id="chart-title">mAP50 by version</h2><svg id="chart" class="chart" viewBox="0 0 600 220"></svg></section>
      <section><h2>Recent rounds</h2><div class="scroll"><table id="rounds">
        <thead><tr><th>Ended</th><th>Outcome</th><th>mAP50 before &rarr; after</th><th>Frames</th><th>Why</th></tr></thead>
        <tbody></tbody></table></div></section>
    </div>
    <section><h2>Budget moves</h2><div class="scroll"><table id="budget-moves">
      <thead><tr><th>When</th><th>Asked</th><th>Told</th><th>Why</th></tr></thead>
      <tbody></tbody></table></div></section>
    <section><h2>Latest labelled frames</h2><div id="frames" class="frames"></div></section>
  </div>
</main>
<script>
"use strict";
window.__errors = [];
function reportError(message) {
  window.__errors.push(String(message));
  document.getElementById("errors").textContent = window.__errors.join("\n");
}
window.onerror = function (message, source, line) { reportError(message + " (line " + line + ")"); };
window.addEventListener("unhandledrejection", function (e) { reportError(e.reason); });

const token = new URLSearchParams(location.search).get("token") || "";
const headers = { Authorization: "Bearer " + token };
const REFRESH_MS = 5000;
let selected = null;
const imageUrls = new Map();  // frame URL -> object URL of its fetched JPEG

async function getJson(url) {
  const response = await fetch(url, { headers: headers });
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response.json();
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const fmt = (x, digits) => (x === null || x === undefined) ? "–" : Number(x).toFixed(digits);
const when = (ms) => ms ? new Date(ms).toLocaleTimeString() : "–";

function renderFleet(devices) {
  const body = document.querySelector("#fleet tbody");
  body.replaceChildren();
  for (const d of devices) {
    const row = el("tr", { class: "device" + (d.id === selected ? " selected" : ""), "data-device": d.id });
    row.append(el("td", {}, d.id));
    row.append(el("td", { class: d.connected ? "on" : "off" }, d.connected ? "yes" : (d.enabled ? "no" : "disabled")));
    row.append(el("td", {}, (d.served_version === null ? "–" : "v" + d.served_version) + " / v" + d.version));
    const map = el("td", {}, fmt(d.map50, 3));
    if (d.map50_trend !== null) {
      const up = d.map50_trend >= 0;
      map.append(el("span", { class: up ? "up" : "down" }, " " + (up ? "▲" : "▼") + fmt(Math.abs(d.map50_trend), 3)));
    }
    row.append(map);
    row.append(el("td", {}, String(d.frames)));
    const b = d.budget;
    row.append(el("td", {}, b ? fmt(b.requested, 1) + " / " + fmt(b.granted, 1) + (b.reason ? " (" + b.reason + ")" : "") : "–"));
    row.append(el("td", {}, b ? fmt(b.agreement, 2) : "–"));
    const r = d.last_round;
    row.append(el("td", { class: r && !r.published ? "discarded" : "" },
                  d.round_running ? "running" : (r ? when(r.ended_ms) + " " + (r.published ? "published v" + r.version : "discarded") : "–")));
    row.append(el("td", {}, fmt(d.kbps_in, 1) + " / " + fmt(d.kbps_out, 1)));
    row.append(el("td", {}, d.group || "–"));
    const admin = el("td", { class: "admin-state" });
    if (d.pinned_version !== null) admin.append(el("span", { class: "pinned" }, "pinned v" + d.pinned_version + " "));
    if (d.paused) admin.append(el("span", { class: "paused" }, "paused"));
    if (d.pinned_version === null && !d.paused) admin.textContent = "–";
    row.append(admin);
    row.addEventListener("click", () => { selected = d.id; refresh(); });
    body.append(row);
  }
}

// mAP50 by version as an SVG line chart: x the version, y the held-out mAP50 in [0, 1].
function renderChart(versions) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const W = 600, H = 220, L = 40, R = 10, T = 10, B = 30;
  chart.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  chart.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const y of [0, 0.5, 1]) chart.append(svg("text", { x: 4, y: H - B - y * (H - B - T) + 4 }, y.toFixed(1)));
  const points = versions.filter((v) => v.val_map50 !== null);
  if (points.length === 0) {
    chart.append(svg("text", { x: L + 10, y: T + 20 }, "no published version yet"));
    return;
  }
  const first = points[0].version, last = points[points.length - 1].version;
  const x = (v) => L + (last === first ? (W - L - R) / 2 : (v - first) / (last - first) * (W - L - R));
  const y = (m) => H - B - m * (H - B - T);
  chart.append(svg("text", { x: L, y: H - 8 }, "v" + first));
  if (last !== first) chart.append(svg("text", { x: W - R - 30, y: H - 8 }, "v" + last));
  chart.append(svg("polyline", { class: "line", points: points.map((p) => x(p.version) + "," + y(p.val_map50)).join(" ") }));
  for (const p of points) {
    const dot = svg("circle", { class: "point", cx: x(p.version), cy: y(p.val_map50), r: 3.5 });
    dot.append(svg("title", {}, "v" + p.version + ": " + p.val_map50.toFixed(3) + " at " + new Date(p.created_ms).toLocaleString()));
    chart.append(dot);
  }
}

// How the camera's budget moved: what its edge asked for and why, what the server told it.
function renderBudgetMoves(moves) {
  const body = document.querySelector("#budget-moves tbody");
  body.replaceChildren();
  for (const m of (moves || []).slice().reverse()) {
    const row = el("tr");
    row.append(el("td", {}, when(m.time_ms)));
    row.append(el("td", {}, fmt(m.requested, 1)));
    row.append(el("td", {}, fmt(m.granted, 1)));
    row.append(el("td", { class: "why" }, m.reason || "–"));
    body.append(row);
  }
}

function renderRounds(rounds) {
  const body = document.querySelector("#rounds tbody");
  body.replaceChildren();
  for (const r of rounds.slice().reverse()) {
    const row = el("tr");
    row.append(el("td", {}, when(r.ended_ms)));
    row.append(el("td", { class: r.published ? "" : "discarded" }, r.published ? "published v" + r.version : "discarded"));
    const longterm = r.longterm_val_frames > 0
      ? "; long-term " + fmt(r.longterm_map50_before, 3) + " → " + fmt(r.longterm_map50_after, 3) : "";
    row.append(el("td", {}, fmt(r.map50_before, 3) + " → " + fmt(r.map50_after, 3) + longterm));
    row.append(el("td", {}, r.train_frames + (r.memory_frames > 0 ? " + " + r.memory_frames + " long-term" : "") +
                            ", " + r.val_frames + (r.longterm_val_frames > 0 ? " + " + r.longterm_val_frames : "") +
                            " held out"));
    row.append(el("td", { class: "why" }, r.reason));
    body.append(row);
  }
}

// An <img> cannot send the Authorization header: each JPEG is fetched with it and shown from
// an object URL, kept while the frame stays in the list.
async function imageUrl(url) {
  if (!imageUrls.has(url)) {
    const response = await fetch(url, { headers: headers });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    imageUrls.set(url, URL.createObjectURL(await response.blob()));
  }
  return imageUrls.get(url);
}

async function renderFrames(data) {
  const box = document.getElementById("frames");
  const figures = [];
  for (const f of data.frames) {
    const figure = el("figure", { "data-sequence": f.sequence });
    const img = el("img", { alt: "frame " + f.sequence });
    const overlay = svg("svg", { preserveAspectRatio: "none" });
    img.addEventListener("load", () => {
      overlay.setAttribute("viewBox", "0 0 " + img.naturalWidth + " " + img.naturalHeight);
      for (const b of f.labels) {
        overlay.append(svg("rect", { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1 }));
        const name = data.class_names[b.class_id] || "class" + b.class_id;
        // Anchored on the side with room, so that a box at the right edge keeps its label.
        const right = b.x1 > img.naturalWidth / 2;
        overlay.append(svg("text", { x: right ? b.x2 : b.x1, y: Math.max(14, b.y1 - 3), "text-anchor": right ? "end" : "start" },
                           name + " " + b.score.toFixed(2)));
      }
    });
    img.src = await imageUrl(f.url);
    figure.append(img, overlay, el("figcaption", {}, "#" + f.sequence + (f.validation ? " (held out)" : "") +
                                                  ", " + f.labels.length + (f.labels.length === 1 ? " box" : " boxes") +
                                                  (f.privacy ? ", masked: " + f.privacy : "")));
    figures.push(figure);
  }
  const shown = new Set(data.frames.map((f) => f.url));
  for (const [url, objectUrl] of imageUrls)
    if (!shown.has(url)) { URL.revokeObjectURL(objectUrl); imageUrls.delete(url); }
  box.replaceChildren(...figures);
}

// An admin action on the selected device; its answer (the device's row, or the server's
// message) shows beside the buttons, and the table refreshes at once.
async function act(action) {
  const result = document.getElementById("action-result");
  if (selected === null) return;
  const init = { method: "POST", headers: headers };
  if (action === "pin") init.body = JSON.stringify({ version: Number(document.getElementById("pin-version").value) });
  result.className = "";
  result.textContent = action + "…";
  try {
    const response = await fetch("/api/devices/" + encodeURIComponent(selected) + "/" + action, init);
    const text = await response.text();
    result.className = response.ok ? "" : "failed";
    result.textContent = response.ok ? action + ": done" : action + ": HTTP " + response.status + " " + text;
  } catch (e) {
    result.className = "failed";
    result.textContent = action + ": " + (e.message || e);
  }
  await refresh();
}
for (const button of document.querySelectorAll("button[data-action]"))
  button.addEventListener("click", () => act(button.dataset.action));

async function refresh() {
  try {
    const fleet = await getJson("/api/devices");
    if (selected === null && fleet.devices.length > 0) selected = fleet.devices[0].id;
    renderFleet(fleet.devices);
    if (selected !== null) {
      const id = encodeURIComponent(selected);
      const [detail, frames] = await Promise.all([getJson("/api/devices/" + id), getJson("/api/devices/" + id + "/frames")]);
      document.getElementById("detail").hidden = false;
      document.getElementById("chart-title").textContent = selected + ": held-out mAP50 by version";
      document.getElementById("admin-title").textContent = "Admin: " + selected;
      renderChart(detail.versions);
      renderRounds(detail.recent_rounds);
      renderBudgetMoves(detail.budget_moves);
      await renderFrames(frames);
    }
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("status").textContent = "update failed";
    reportError(e.message || e);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
)PAGE";

}  // namespace sd
