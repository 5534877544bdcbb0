// The fleet page: polls tile-proxy's /proxy/fleet and draws one row per node, each figure a small plot of
// the samples the proxy kept (oldest left) with the latest value beside it. No dependencies.
"use strict";

const WIDTH = 90;
const HEIGHT = 24;
const SVG = "http://www.w3.org/2000/svg";

function sparkline(values, fixedMax) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", WIDTH);
  svg.setAttribute("height", HEIGHT);
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const known = values.map((v, i) => [i, v]).filter(([, v]) => typeof v === "number");
  if (known.length === 0) {
    return svg;
  }
  const top = fixedMax ?? Math.max(...known.map(([, v]) => v), 1e-9);
  const step = values.length > 1 ? WIDTH / (values.length - 1) : 0;
  const points = known.map(([i, v]) => {
    const y = HEIGHT - 2 - (Math.min(v, top) / top) * (HEIGHT - 4);
    return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  });
  if (points.length === 1) {
    points.push(`${WIDTH},${points[0].split(",")[1]}`);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  return svg;
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) {
    if (typeof values[i] === "number") {
      return values[i];
    }
  }
  return null;
}

const FIGURES = [
  { key: "rps", show: (v) => v.toFixed(1) },
  { key: "p99_ms", show: (v) => `${v.toFixed(1)} ms` },
  { key: "cache_hit_ratio", show: (v) => `${(100 * v).toFixed(0)} %`, max: 1 },
  { key: "generation", show: (v) => String(v) },
  { key: "queue", show: (v) => String(v) },
  { key: "disk_free_bytes", show: (v) => `${(v / 2 ** 30).toFixed(1)} GiB` },
];

function oldestGeneration(datasets) {
  const served = Object.values(datasets || {});
  return served.length ? Math.min(...served) : null;
}

function plotCell(values, figure) {
  const cell = document.createElement("td");
  cell.className = "plot";
  cell.dataset.figure = figure.key;
  cell.appendChild(sparkline(values, figure.max));
  const value = document.createElement("span");
  const latest = last(values);
  value.textContent = latest === null ? "–" : figure.show(latest);
  if (latest === null) {
    value.className = "empty";
  }
  cell.appendChild(value);
  return cell;
}

function proxyRow(samples) {
  const row = document.createElement("tr");
  row.dataset.node = "proxy";
  row.className = "proxy";
  const name = document.createElement("td");
  name.textContent = "this tile-proxy";
  row.appendChild(name);
  row.appendChild(document.createElement("td"));
  row.appendChild(plotCell(samples.map((s) => s.proxy.rps), FIGURES[0]));
  row.appendChild(document.createElement("td"));
  row.appendChild(plotCell(samples.map((s) => s.proxy.hit_ratio), FIGURES[2]));
  for (let i = 0; i < 3; i += 1) {
    row.appendChild(document.createElement("td"));
  }
  return row;
}

function render(doc) {
  const samples = doc.samples;
  const latest = samples[samples.length - 1];
  const proxy = latest ? latest.proxy : {};
  const rps = typeof proxy.rps === "number" ? proxy.rps.toFixed(1) : "–";
  const hit = typeof proxy.hit_ratio === "number" ? `${(100 * proxy.hit_ratio).toFixed(0)} %` : "–";
  document.getElementById("summary").textContent =
    `${doc.live.length} of ${doc.nodes.length} nodes live · this proxy: ${rps} requests/s, cache hit ratio ${hit}` +
    ` · a sample every ${doc.interval_seconds} s` + (latest ? ` · last ${latest.at}` : "");
  const body = document.querySelector("#fleet tbody");
  body.replaceChildren();
  body.appendChild(proxyRow(samples));
  for (const node of doc.nodes) {
    const row = document.createElement("tr");
    row.dataset.node = node.id;
    const name = document.createElement("td");
    name.textContent = node.id;
    name.title = node.instance_id || "";
    row.appendChild(name);
    const health = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `state ${node.state}`;
    badge.textContent = node.state;
    health.appendChild(badge);
    health.appendChild(sparkline(samples.map((s) => (s.nodes[node.id] ? (s.nodes[node.id].state === "live" ? 1 : 0) : null)), 1));
    row.appendChild(health);
    for (const figure of FIGURES) {
      const values = samples.map((s) => {
        const seen = s.nodes[node.id];
        if (!seen) {
          return null;
        }
        return figure.key === "generation" ? oldestGeneration(seen.generation) : seen[figure.key];
      });
      if (figure.key === "generation" && last(values) === null) {
        values.push(oldestGeneration(node.datasets));
      }
      row.appendChild(plotCell(values, figure));
    }
    body.appendChild(row);
  }
}

async function refresh() {
  let wait = 5000;
  try {
    const response = await fetch("/proxy/fleet", { cache: "no-store" });
    const doc = await response.json();
    wait = Math.max(1000, 1000 * doc.interval_seconds);
    render(doc);
    document.getElementById("error").textContent = "";
    document.body.dataset.loaded = "yes";
  } catch (err) {
    document.getElementById("error").textContent = `cannot read /proxy/fleet: ${err}`;
  }
  setTimeout(refresh, wait);
}

refresh();
