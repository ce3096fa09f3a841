// Which services the page watches, and how one health check is made and read.
// Every URL is on the page's own origin: nginx routes /api/ and /mcp/<name>/ to the services.

export const REFRESH_MS = 5000;
// Shorter than the refresh, so a hung service never makes two checks overlap.
const TIMEOUT_MS = 4000;

// Set at build time by the deploy (VITE_MCP_SERVERS=memory,task,...), from its port table.
const MCP_SERVERS = (import.meta.env.VITE_MCP_SERVERS || "memory,task,agent,data,monitor")
  .split(",")
  .map((name) => name.trim())
  .filter(Boolean);

export const SERVICES = [
  { id: "api", label: "API", url: "/api/health/" },
  ...MCP_SERVERS.map((name) => ({ id: name, label: `MCP ${name}`, url: `/mcp/${name}/health` })),
];

// The result of one check: up or not, and what the service said.
export async function checkService(service) {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(service.url, { cache: "no-store", signal: controller.signal });
    const body = await response.json().catch(() => null);
    // Both the API and the MCP servers say {"status": "ok"} when healthy; a 200 alone could be
    // this page itself, answered for a path that nginx failed to route.
    const up = response.ok && body?.status === "ok";
    return {
      up,
      detail: up ? "ok" : response.ok ? "unexpected answer" : `HTTP ${response.status}`,
      body,
      latencyMs: Math.round(performance.now() - started),
    };
  } catch (error) {
    const detail = error.name === "AbortError" ? `no answer in ${TIMEOUT_MS / 1000} s` : "unreachable";
    return { up: false, detail, body: null, latencyMs: null };
  } finally {
    clearTimeout(timer);
  }
}
