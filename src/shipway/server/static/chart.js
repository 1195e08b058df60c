// Line charts of metric steps as inline SVG: no chart library, nothing loaded.
import { h, num, s } from "./dom.js";

const W = 480;
const H = 200;
const PAD = { left: 52, right: 14, top: 12, bottom: 26 };

/** `series`: `[{name, points: [[step, value], ...]}]`, each drawn in its own colour. */
export function lineChart(title, series) {
  const all = series.flatMap((x) => x.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);

  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${title} by step`,
  });
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.append(
      s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: py(y), y2: py(y) }),
      s("text", { x: PAD.left - 6, y: py(y) + 4, "text-anchor": "end" }, num(y)),
    );
  }
  for (const x of ticks(x0, x1)) {
    svg.append(s("text", { x: px(x), y: H - 8, "text-anchor": "middle" }, num(x)));
  }
  series.forEach((line, i) => {
    const colour = `s${i % 6}`;
    const points = [...line.points].sort((a, b) => a[0] - b[0]);
    if (points.length > 1) {
      const d = points.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`);
      svg.append(s("path", { class: `line ${colour}`, d: d.join(" ") }));
    }
    for (const [x, y] of points) {
      svg.append(
        s(
          "circle",
          { class: `dot ${colour}`, cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: 3 },
          s("title", {}, `${line.name}: step ${x}, ${num(y)}`),
        ),
      );
    }
  });
  const legend =
    series.length > 1
      ? h(
          "div",
          { class: "legend" },
          series.map((line, i) => h("span", {}, h("span", { class: `swatch s${i % 6}` }), line.name)),
        )
      : null;
  return h("figure", { class: "chart", "data-metric": title }, h("figcaption", {}, title), svg, legend);
}

function ticks(x0, x1) {
  const span = x1 - x0;
  const step = Math.max(1, Math.ceil(span / 6));
  const out = [];
  for (let x = Math.ceil(x0); x <= x1; x += step) out.push(x);
  return out;
}

/** One chart per metric key: `histories` is `[{name, metrics: {key: [[step, value]]}}]`. */
export function metricCharts(histories) {
  const keys = [...new Set(histories.flatMap((r) => Object.keys(r.metrics)))].sort();
  if (!keys.length) return h("p", { class: "empty" }, "No metrics logged.");
  return h(
    "div",
    { class: "charts" },
    keys.map((key) =>
      lineChart(
        key,
        histories
          .filter((r) => r.metrics[key]?.length)
          .map((r) => ({ name: r.name, points: r.metrics[key] })),
      ),
    ),
  );
}
