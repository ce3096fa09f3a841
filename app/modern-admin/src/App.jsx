import { useEffect, useState } from "react";

import Overview from "./Overview.jsx";
import { REFRESH_MS, SERVICES, checkService } from "./health.js";
import { fetchOverview } from "./overview.js";

function StatusDot({ up }) {
  return <span className={`dot ${up ? "up" : "down"}`} aria-label={up ? "up" : "down"} />;
}

// The API's own report: one line per data store it depends on.
function StoreChecks({ checks }) {
  return (
    <ul className="stores">
      {Object.entries(checks).map(([store, check]) => (
        <li key={store}>
          <StatusDot up={check.status === "up"} /> {store}
          <span className="muted">
            {check.status === "up" ? ` ${check.latency_ms} ms` : ` down (${check.error})`}
          </span>
        </li>
      ))}
    </ul>
  );
}

function ServiceRow({ service, result }) {
  const known = result !== undefined;
  return (
    <tr className={known ? (result.up ? "up" : "down") : "pending"}>
      <td>{known ? <StatusDot up={result.up} /> : <span className="dot" />}</td>
      <td>
        <strong>{service.label}</strong>
        {result?.body?.checks && <StoreChecks checks={result.body.checks} />}
      </td>
      <td>{known ? result.detail : "checking…"}</td>
      <td className="muted">{result?.latencyMs != null ? `${result.latencyMs} ms` : ""}</td>
    </tr>
  );
}

export default function App() {
  const [results, setResults] = useState({});
  const [overview, setOverview] = useState(null);
  const [checkedAt, setCheckedAt] = useState(null);

  useEffect(() => {
    let cancelled = false;
    async function refresh() {
      const [checks, whole] = await Promise.all([
        Promise.all(SERVICES.map((service) => checkService(service))), fetchOverview()]);
      if (cancelled) return;
      setResults(Object.fromEntries(SERVICES.map((service, i) => [service.id, checks[i]])));
      setOverview(whole);
      setCheckedAt(new Date());
    }
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, []);

  const release = results.api?.body?.release;
  const allUp = SERVICES.every((service) => results[service.id]?.up);
  return (
    <main>
      <header>
        <h1>Orchestra</h1>
        <p className={`summary ${checkedAt ? (allUp ? "up" : "down") : ""}`}>
          {checkedAt ? (allUp ? "API and MCP servers up through the edge" : "Some API or MCP servers are down")
            : "Checking…"}
        </p>
        <p className="muted">
          {release && `Release ${release} · `}
          {checkedAt && `checked ${checkedAt.toLocaleTimeString()}, every ${REFRESH_MS / 1000} s`}
        </p>
      </header>
      <Overview data={overview} />
      <h2>Through the edge</h2>
      <table>
        <thead>
          <tr>
            <th />
            <th>Service</th>
            <th>Status</th>
            <th>Latency</th>
          </tr>
        </thead>
        <tbody>
          {SERVICES.map((service) => (
            <ServiceRow key={service.id} service={service} result={results[service.id]} />
          ))}
        </tbody>
      </table>
    </main>
  );
}
