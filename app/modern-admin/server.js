// Serves the built admin (dist/, from `npm run build`) on PORT (default 3000), on HOST
// (default 127.0.0.1: nginx is in front). Node's built-ins only, so production installs
// nothing from npm at run time. Nothing is proxied: nginx routes /api/ and /mcp/ itself;
// /_admin/overview answers from the host's loopback sources (overview.js).
// CommonJS on purpose: every Node and PM2 version runs it as it is.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const { overview } = require("./overview.js");

const ROOT = path.join(__dirname, "dist");
const INDEX = path.join(ROOT, "index.html");
const PORT = Number.parseInt(process.env.PORT || "3000", 10);
const HOST = process.env.HOST || "127.0.0.1";
const SHUTDOWN_GRACE_MS = 5000;

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

// The file under ROOT that urlPath names, or null when it would leave ROOT.
function fileFor(urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes("\0")) return null;
  const file = path.join(ROOT, path.posix.normalize(`/${decoded}`));
  return file.startsWith(ROOT + path.sep) ? file : null;
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function send(res, status, text, headers = {}) {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
  res.end(text);
}

function serveFile(req, res, file) {
  // Vite puts content hashes in the names under assets/: those never change. Anything else
  // (index.html above all) must be revalidated, so a new release shows at once.
  const immutable = file.startsWith(path.join(ROOT, "assets") + path.sep);
  const headers = {
    "Content-Type": CONTENT_TYPES[path.extname(file)] || "application/octet-stream",
    "Cache-Control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    "X-Content-Type-Options": "nosniff",
  };
  const stream = fs.createReadStream(file);
  stream.on("open", () => {
    res.writeHead(200, headers);
    if (req.method === "HEAD") {
      stream.destroy();
      res.end();
    } else {
      stream.pipe(res);
    }
  });
  stream.on("error", () => {
    if (res.headersSent) res.destroy();
    else send(res, 500, "cannot read file\n");
  });
}

function handle(req, res) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    send(res, 405, "method not allowed\n", { Allow: "GET, HEAD" });
    return;
  }
  const { pathname } = new URL(req.url, "http://admin.invalid");
  if (pathname === "/_admin/overview") {
    overview().then(
      (body) => send(res, 200, JSON.stringify(body), {
        "Content-Type": "application/json", "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
      }),
      (error) => send(res, 500, `overview failed: ${error.message}\n`));
    return;
  }
  const file = fileFor(pathname);
  if (file === null) {
    send(res, 400, "bad path\n");
  } else if (isFile(file)) {
    serveFile(req, res, file);
  } else if (path.extname(pathname) === "") {
    serveFile(req, res, INDEX); // a route of the single-page app
  } else {
    send(res, 404, "not found\n");
  }
}

if (!isFile(INDEX)) {
  console.error(`admin: ${INDEX} is missing: run "npm ci && npm run build" first`);
  process.exit(1);
}

// A host of a multi-host layout serves the edge on its private address too.
const ALSO = (process.env.LISTEN_ALSO || "").split(",").filter((a) => a && a !== HOST);
const servers = [HOST, ...ALSO].map((address) => {
  const one = http.createServer(handle);
  one.listen(PORT, address, () => {
    console.log(`admin: serving ${ROOT} on http://${address}:${PORT}`);
  });
  return one;
});

// Let requests in flight finish, but never hang a stop or a restart.
function shutdown(signal) {
  console.log(`admin: ${signal}, stopping`);
  let open = servers.length;
  for (const one of servers) {
    one.close(() => (--open === 0 ? process.exit(0) : undefined));
    one.closeIdleConnections?.();
  }
  setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
