// GET /_admin/overview: everything the page shows but the health checks, in one answer.
// Only the server asks its sources, with fixed questions: the status rows (STATUS_FILE,
// written every few seconds by orchestra-status.timer, the rows `orchestra-infra status`
// computes), Prometheus's HTTP API (graphs of the last hour) and Alertmanager's (alerts
// firing now), all on loopback; in a multi-host layout, every other host's status document
// (its rows and its alerts) from STATUS_PEERS, `label=address:port` on the private network,
// where a systemd socket writes the document and closes. Nothing of the browser's request
// reaches them. CommonJS and Node's built-ins only, like server.js.
//
// A peer read that fails is tried once more; if that fails too, the peer's last document
// (kept for PEER_KEEP_S, three of its status intervals) is shown with the error beside it,
// so that one slow answer from a loaded host does not turn the whole host red on the page.
// Past that, or with nothing kept, the host is one red line.
"use strict";

const fs = require("node:fs");
const net = require("node:net");

const STATUS_FILE = process.env.STATUS_FILE || "/run/orchestra-status/status.json";
const STATUS_PEERS = (process.env.STATUS_PEERS || "").split(",").filter(Boolean).map((peer) => {
  const [label, where] = peer.split("=");
  const colon = where.lastIndexOf(":");
  return { label, host: where.slice(0, colon), port: Number(where.slice(colon + 1)) };
});
const PEER_MAX_BYTES = 4 * 1024 * 1024;
const PEER_RETRY_MS = 500;
const PEER_KEEP_S = 30;
const PROMETHEUS_URL = process.env.PROMETHEUS_URL || "http://127.0.0.1:9090";
const ALERTMANAGER_URL = process.env.ALERTMANAGER_URL ?? "http://127.0.0.1:9093";
const SOURCE_TIMEOUT_MS = 3000;
const HOUR_S = 3600;
const STEP_S = 60;

// The graphs: PromQL written here, never taken from a request.
const GRAPHS = [
  { id: "requests", title: "Requests per second (nginx)", unit: "req/s",
    query: "sum(rate(nginx_http_requests_total[2m]))", label: () => "all" },
  { id: "errors", title: "5xx ratio (nginx)", unit: "%",
    query: '100 * sum(rate(orchestra_nginx_responses_total{status=~"5.."}[5m]) or vector(0))' +
      " / sum(rate(orchestra_nginx_responses_total[5m]))",
    label: () => "5xx" },
  // Each upstream's response time, from nginx's access log (mtail's histogram).
  { id: "latency", title: "Latency per upstream (p95 over 5 min, nginx)", unit: "ms",
    query: "1000 * histogram_quantile(0.95, sum by (le, upstream) " +
      "(rate(orchestra_nginx_upstream_seconds_bucket[5m])))",
    label: (m) => m.upstream || "upstream" },
  // With several hosts each target carries its `host` label; with one, its instance.
  { id: "cpu", title: "CPU per host", unit: "%",
    query: '100 * (1 - avg by (instance, host) (rate(node_cpu_seconds_total{mode="idle"}[2m])))',
    label: (m) => m.host || m.instance || "host" },
  { id: "memory", title: "Memory per host", unit: "%",
    query: "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    label: (m) => m.host || m.instance || "host" },
];

async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(SOURCE_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function why(error) {
  return error.name === "TimeoutError" ? "no answer" : String(error.message || error);
}

function aged(document, now) {
  return { ...document, age_seconds: Math.max(0, Math.round(now - document.generated)) };
}

function readStatus(now) {
  try {
    return aged(JSON.parse(fs.readFileSync(STATUS_FILE, "utf8")), now);
  } catch (error) {
    return { error: error.code === "ENOENT" ? "no status yet" : `unreadable: ${why(error)}` };
  }
}

// Each peer's last document read, and when (this process's clock): { document, at }.
const lastRead = new Map();

// A peer's document: connect, read to the end (bounded in size and time), parse; once more
// after any failure (an empty answer: the peer's socket refused this one, or its first
// document is due; no answer in time: a loaded host); then its last document, if recent.
async function readPeer(peer, now) {
  let found = await readPeerOnce(peer, now);
  if (found.error) {
    await new Promise((resolve) => setTimeout(resolve, PEER_RETRY_MS));
    found = await readPeerOnce(peer, now);
  }
  if (!found.error) {
    lastRead.set(peer.label, { document: found, at: now });
    return found;
  }
  const last = lastRead.get(peer.label);
  if (!last || now - last.at > PEER_KEEP_S) return found;
  return { ...aged(last.document, now), stale: found.error };
}

function readPeerOnce(peer, now) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    const done = (result) => { socket.destroy(); resolve({ host: peer.label, ...result }); };
    const socket = net.connect({ host: peer.host, port: peer.port });
    socket.setTimeout(SOURCE_TIMEOUT_MS, () => done({ error: "no answer" }));
    socket.on("error", (error) => done({ error: `unreachable: ${error.code || error.message}` }));
    socket.on("data", (chunk) => {
      size += chunk.length;
      if (size > PEER_MAX_BYTES) return done({ error: "answer too large" });
      chunks.push(chunk);
    });
    socket.on("end", () => {
      try {
        const document = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        done(aged({ ...document, host: peer.label }, now));
      } catch {
        done({ error: size ? "unreadable answer" : "no status yet" });
      }
    });
  });
}

async function graph(spec, now) {
  const end = Math.round(now);
  const params = new URLSearchParams({
    query: spec.query, start: String(end - HOUR_S), end: String(end), step: String(STEP_S),
  });
  try {
    const body = await getJson(`${PROMETHEUS_URL}/api/v1/query_range?${params}`);
    let result = body.data?.result || [];
    // Several hosts: every target of ours has a `host` label. A new metrics host's package
    // scraped `localhost` with its own config before the deploy's replaced it, and those
    // series stay in the hour shown: a second line for one host.
    if (result.some((s) => s.metric?.host)) result = result.filter((s) => s.metric?.host);
    const series = result.map((s) => ({
      label: spec.label(s.metric || {}),
      points: s.values.map(([t, v]) => [Number(t), Number(v)]).filter(([, v]) => Number.isFinite(v)),
    }));
    return { id: spec.id, title: spec.title, unit: spec.unit, series };
  } catch (error) {
    return { id: spec.id, title: spec.title, unit: spec.unit, series: [], error: why(error) };
  }
}

async function alerts() {
  // A multi-host layout's other hosts: the metrics host's document carries the alerts.
  if (!ALERTMANAGER_URL) return { firing: [] };
  try {
    const list = await getJson(
      `${ALERTMANAGER_URL}/api/v2/alerts?active=true&silenced=false&inhibited=false`);
    return {
      firing: list.map((a) => ({
        name: a.labels?.alertname || "?",
        severity: a.labels?.severity || "",
        summary: a.annotations?.summary || a.annotations?.description || "",
        since: a.startsAt || null,
        labels: a.labels || {},
      })),
    };
  } catch (error) {
    return { firing: [], error: why(error) };
  }
}

// This host's alerts (asked now), then each peer's (from its document), each with its host:
// the alert's own `host` label (the environment's Alertmanager, on the metrics host, holds
// every host's alerts), else the host that reported it.
function everyAlert(status, own, peers) {
  const tagged = (host, list) => list.map((alert) => ({ host: alert.labels?.host || host, ...alert }));
  const errors = [own.error && `${status.host || "this host"}: ${own.error}`,
    ...peers.map((p) => p.alerts?.error && `${p.host}: ${p.alerts.error}`)];
  const found = {
    firing: [...tagged(status.host || "this host", own.firing),
      ...peers.flatMap((p) => tagged(p.host, p.alerts?.firing || []))],
  };
  if (errors.some(Boolean)) found.error = errors.filter(Boolean).join("; ");
  return found;
}

async function overview() {
  const now = Date.now() / 1000;
  const [graphs, own, peers] = await Promise.all([
    Promise.all(GRAPHS.map((spec) => graph(spec, now))), alerts(),
    Promise.all(STATUS_PEERS.map((peer) => readPeer(peer, now)))]);
  const status = readStatus(now);
  return {
    generated: Math.round(now), status, peers, alerts: everyAlert(status, own, peers), graphs,
  };
}

module.exports = { overview, GRAPHS };
