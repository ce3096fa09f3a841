// The host's whole picture, from the admin's own server (server.js, overview.js): the rows of
// `orchestra-infra status`, the alerts firing now, and graphs of the last hour.

export const OVERVIEW_URL = "/_admin/overview";
const TIMEOUT_MS = 8000;

export async function fetchOverview() {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(OVERVIEW_URL, { cache: "no-store", signal: controller.signal });
    if (!response.ok) return { error: `HTTP ${response.status}` };
    return await response.json();
  } catch (error) {
    return { error: error.name === "AbortError" ? "no answer" : "unreachable" };
  } finally {
    clearTimeout(timer);
  }
}

// Same units and rounding as `orchestra-infra status`'s table.
export function formatDuration(seconds) {
  if (seconds == null) return "-";
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
  if (seconds < 86400) {
    return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
  }
  return `${Math.floor(seconds / 86400)}d${String(Math.floor((seconds % 86400) / 3600)).padStart(2, "0")}h`;
}

export function formatBytes(value) {
  if (value == null) return "-";
  for (const [unit, factor] of [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]]) {
    if (value >= factor) {
      const number = value / factor;
      return number < 10 ? `${number.toFixed(1)}${unit}` : `${Math.round(number)}${unit}`;
    }
  }
  return `${value}B`;
}
