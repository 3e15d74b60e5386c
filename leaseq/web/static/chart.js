// The jobs-per-minute chart: acks, failures and lease expiries over the last minutes, an
// SVG drawn at the size it is shown (so its text stays readable on a phone), with
// labelled axes and a legend. Drawn empty at once, then from each snapshot's rates.
import { svg } from "./util.js";

const SERIES = [
  { key: "acked", label: "acks", color: "#2952cc", dash: "", marker: "circle" },
  { key: "failed", label: "failures", color: "#b42318", dash: "6 3", marker: "square" },
  { key: "expired", label: "lease expiries", color: "#9a3f05", dash: "2 3", marker: "diamond" },
];
const HEIGHT = 230;
const MARGIN = { left: 48, right: 14, top: 34, bottom: 42 };

let last = null;

// Up to about five round ticks from 0 covering max (at least 0..5).
function ticks(max) {
  const top = Math.max(max, 5);
  const rough = top / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const out = [];
  for (let v = 0; v < top + step; v += step) out.push(v);
  return out;
}

function marker(kind, x, y, color) {
  if (kind === "circle") return svg("circle", { cx: x, cy: y, r: 3.5, fill: color });
  if (kind === "square") {
    return svg("rect", { x: x - 3.5, y: y - 3.5, width: 7, height: 7, fill: color });
  }
  return svg("path", { d: `M${x} ${y - 4.5}L${x + 4.5} ${y}L${x} ${y + 4.5}L${x - 4.5} ${y}Z`,
    fill: color });
}

function empty(minutes) {
  const zeros = Array(minutes).fill(0);
  return { acked: zeros, failed: zeros, expired: zeros, expired_capped: false };
}

// Draw `rates` (or the last ones, on a resize; or empty axes before any data).
export function renderChart(rates = last) {
  last = rates;
  const data = rates || empty(15);
  const node = document.getElementById("chart");
  const width = Math.max(280, Math.round(node.getBoundingClientRect().width) || 600);
  const n = data.acked.length;
  // The legend first: its rows (as many as the width needs) push the plot down.
  const legend = [];
  let lx = 8;
  let row = 0;
  for (const s of SERIES) {
    const total = data[s.key].reduce((a, b) => a + b, 0);
    const capped = s.key === "expired" && data.expired_capped ? "+" : "";
    const label = `${s.label} (${total}${capped})`;
    const itemWidth = 34 + label.length * 7;
    if (lx > 8 && lx + itemWidth > width - 4) {
      row += 1;
      lx = 8;
    }
    legend.push({ s, label, x: lx, y: 14 + row * 18 });
    lx += itemWidth + 8;
  }
  const top = MARGIN.top + row * 18;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - top - MARGIN.bottom;
  const all = SERIES.flatMap((s) => data[s.key]);
  const yTicks = ticks(Math.max(0, ...all));
  const yMax = yTicks[yTicks.length - 1];
  const x = (i) => MARGIN.left + (plotW * (i + 0.5)) / n;
  const y = (v) => top + plotH - (plotH * v) / yMax;
  node.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  node.setAttribute("height", String(HEIGHT));

  const parts = [];
  // The y axis: gridlines, tick labels, its title.
  for (const v of yTicks) {
    parts.push(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v),
      class: v === 0 ? "axis" : "grid" }));
    parts.push(svg("text", { x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end",
      class: "tick" }, String(v)));
  }
  parts.push(svg("text", { x: 12, y: top + plotH / 2, class: "axis-label",
    "text-anchor": "middle", transform: `rotate(-90 12 ${top + plotH / 2})` },
  "jobs/min"));
  // The x axis: minutes ago, 0 being the current (still filling) minute.
  const every = plotW / n >= 26 ? 1 : plotW / n >= 13 ? 2 : 5;
  parts.push(svg("line", { x1: MARGIN.left, x2: MARGIN.left, y1: top,
    y2: top + plotH, class: "axis" }));
  for (let i = 0; i < n; i += 1) {
    const minutesAgo = n - 1 - i;
    if (minutesAgo % every !== 0) continue;
    parts.push(svg("text", { x: x(i), y: top + plotH + 16, "text-anchor": "middle",
      class: "tick" }, String(minutesAgo)));
  }
  parts.push(svg("text", { x: MARGIN.left + plotW / 2, y: HEIGHT - 6, class: "axis-label",
    "text-anchor": "middle" }, "minutes ago (0: the current minute)"));
  // The series, each a line with a marker per minute; a marker's title says its count.
  for (const s of SERIES) {
    const values = data[s.key];
    const group = svg("g", { "data-series": s.key });
    group.append(svg("polyline", { points: values.map((v, i) => `${x(i)},${y(v)}`).join(" "),
      fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash }));
    values.forEach((v, i) => {
      const dot = marker(s.marker, x(i), y(v), s.color);
      dot.append(svg("title", {}, `${n - 1 - i} min ago: ${v} ${s.label}`));
      group.append(dot);
    });
    parts.push(group);
  }
  // The legend, above the plot: what each line is and its total over the chart.
  for (const { s, label, x: at, y: line } of legend) {
    parts.push(svg("g", { class: "legend", "data-legend": s.key },
      svg("line", { x1: at, x2: at + 22, y1: line, y2: line, stroke: s.color,
        "stroke-width": 2, "stroke-dasharray": s.dash }),
      marker(s.marker, at + 11, line, s.color),
      svg("text", { x: at + 28, y: line + 4, class: "legend-text" }, label)));
  }
  const now = SERIES.map((s) => `${data[s.key][n - 1]} ${s.label}`).join(", ");
  parts.unshift(svg("title", { id: "chart-title" },
    `Jobs per minute over the last ${n} minutes; this minute so far: ${now}`));
  node.replaceChildren(...parts);
}

// Redraw at the new width when the page is resized.
export function watchChartSize() {
  const node = document.getElementById("chart");
  let width = 0;
  new ResizeObserver(() => {
    const now = Math.round(node.getBoundingClientRect().width);
    if (now !== width) {
      width = now;
      renderChart();
    }
  }).observe(node);
}
