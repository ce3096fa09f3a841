import { formatBytes, formatDuration } from "./overview.js";

const SERIES_COLOURS = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e"];

// One small line graph: every series of one Prometheus query over the last hour.
function Graph({ graph }) {
  const width = 300;
  const height = 70;
  const points = graph.series.flatMap((s) => s.points);
  const last = graph.series.map((s) => s.points.at(-1)?.[1]).filter((v) => v != null);
  let paths = [];
  if (points.length) {
    const t0 = Math.min(...points.map(([t]) => t));
    const t1 = Math.max(...points.map(([t]) => t), t0 + 1);
    const top = Math.max(...points.map(([, v]) => v), graph.unit === "%" ? 1 : 0.001);
    const x = (t) => ((t - t0) / (t1 - t0)) * width;
    const y = (v) => height - 2 - (v / top) * (height - 4);
    paths = graph.series.map((s, i) => (
      <path key={s.label} fill="none" stroke={SERIES_COLOURS[i % SERIES_COLOURS.length]}
        strokeWidth="1.5"
        d={s.points.map(([t, v], j) => `${j ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("")} />
    ));
  }
  return (
    <figure className="graph" data-graph={graph.id}>
      <figcaption>
        {graph.title}
        <span className="muted">
          {" "}
          {graph.error ? `(${graph.error})`
            : last.length ? `now ${last.map((v) => v.toFixed(v < 10 ? 2 : 0)).join(" / ")} ${graph.unit}`
              : "(no data yet)"}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img"
        aria-label={graph.title}>
        <rect x="0" y="0" width={width} height={height} className="graph-bg" />
        {paths}
      </svg>
      {graph.series.length > 1 && (
        <ul className="legend">
          {graph.series.map((s, i) => (
            <li key={s.label}>
              <span className="swatch" style={{ background: SERIES_COLOURS[i % SERIES_COLOURS.length] }} />
              {s.label}
            </li>
          ))}
        </ul>
      )}
    </figure>
  );
}

function StatusRows({ status }) {
  if (status.error) {
    return <p className="down" data-host={status.host}>{status.host || "Status"}: {status.error}</p>;
  }
  return (
    <div className="host" data-host={status.host}>
      <p className="muted">
        {status.host}: {status.rows.length} rows, read {formatDuration(status.age_seconds)} ago
        (every {status.interval} s)
        {status.stale && <span className="down"> · its last answer: {status.stale}</span>}
      </p>
      <table className="status">
        <thead>
          <tr>
            <th>Service</th>
            <th>State</th>
            <th>Uptime</th>
            <th>Restarts</th>
            <th>Health</th>
            <th>Memory</th>
            <th>Note</th>
          </tr>
        </thead>
        <tbody>
          {status.rows.map((row) => (
            <tr key={`${row.host} ${row.service}`} className={`health-${row.health}`}
              data-service={row.service} data-health={row.health}>
              <td><strong>{row.service}</strong> <span className="muted">{row.manager}</span></td>
              <td>{row.state}</td>
              <td>{formatDuration(row.uptime_seconds)}</td>
              <td>{row.restarts ?? "-"}</td>
              <td>{row.health}</td>
              <td>{formatBytes(row.memory_bytes)}</td>
              <td className="note">{row.note}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Alerts({ alerts }) {
  return (
    <section className="alerts" data-firing={alerts.firing.length}>
      <h2>Alerts firing {alerts.error ? <span className="muted">({alerts.error})</span> : `(${alerts.firing.length})`}</h2>
      {alerts.firing.length === 0 && !alerts.error && <p className="muted">None.</p>}
      <ul>
        {alerts.firing.map((alert) => (
          <li key={`${alert.host} ${alert.name} ${JSON.stringify(alert.labels)}`} className={`alert ${alert.severity}`}>
            <strong>{alert.name}</strong> <span className="muted">{alert.host}</span>{" "}
            {alert.severity && <span className="muted">{alert.severity}</span>}{" "}
            {alert.summary}
          </li>
        ))}
      </ul>
    </section>
  );
}

export default function Overview({ data }) {
  if (!data) return <p className="muted">Reading the host's status…</p>;
  if (data.error) return <p className="down">Overview: {data.error}</p>;
  // This host first, then every other host of a multi-host layout.
  const hosts = [data.status, ...(data.peers || [])];
  const several = hosts.length > 1;
  const named = (host, what) => (several ? `${host.host}: ${what}` : what);
  const failing = hosts.flatMap((host) => (host.error ? [named(host, "no status")]
    : host.rows.filter((row) => row.health === "fail").map((row) => named(host, row.service))));
  return (
    <>
      <section className="glance">
        <p className={`summary ${failing.length ? "down" : "up"}`} data-failing={failing.length}>
          {failing.length ? `${failing.length} failing: ${failing.join(", ")}`
            : several ? `Every service of ${hosts.length} hosts healthy` : "Every service healthy"}
        </p>
        {hosts.filter((host) => !host.error).map((host) => {
          const disks = host.rows.filter((row) => row.service.startsWith("disk "));
          const backup = host.rows.find((row) => row.service === "backup");
          return (
            <p className="muted" key={host.host}>
              {several && `${host.host}: `}
              {disks.map((d) => `${d.service.slice(5)} ${d.state}`).join(" · ")}
              {backup && ` · newest backup: ${backup.state}`}
            </p>
          );
        })}
      </section>
      <Alerts alerts={data.alerts} />
      <section>
        <h2>Last hour</h2>
        <div className="graphs">
          {data.graphs.map((graph) => <Graph key={graph.id} graph={graph} />)}
        </div>
      </section>
      <section>
        <h2>Services (as <code>orchestra-infra status</code> sees them)</h2>
        {hosts.map((host, i) => <StatusRows key={host.host || i} status={host} />)}
      </section>
    </>
  );
}
