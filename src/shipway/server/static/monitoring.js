// Monitoring results, and a stored result's HTML report in a sandboxed frame.
import { api, enc } from "./api.js";
import { h, link, num, status, table, when } from "./dom.js";

export async function render(session, _page, id) {
  if (id) return report(id);
  const results = await api("/monitoring/results");
  return [
    h("h1", {}, "Monitoring"),
    table(
      [
        { label: "Time", cell: (r) => when(r.created_at) },
        { label: "Model", cell: (r) => (r.model ? link(`#/models/${enc(r.model)}/${r.version}`, `${r.model} v${r.version}`) : "files") },
        { label: "Current", cell: (r) => `${r.current.description} (${num(r.current.rows)} rows)` },
        { label: "Drift", cell: (r) => (r.drifted ? status("drifted") : status("no drift")) },
        { label: "Drifted features", cell: (r) => r.drifted_columns.join(", ") || "none" },
        { label: "Worst alert", cell: (r) => (r.worst ? status(r.worst) : "none") },
        { label: "Report", cell: (r) => link(`#/monitoring/${enc(r.id)}`, "Open report") },
      ],
      results,
      { empty: "No monitoring results yet: shipway monitor run." },
    ),
  ];
}

async function report(id) {
  const html = await api(`/monitoring/results/${enc(id)}/report`, { as: "text" });
  // No allow-same-origin: the report runs in an opaque origin, away from this page and its token.
  const frame = h("iframe", {
    class: "report",
    title: "Monitoring report",
    sandbox: "allow-scripts",
    referrerpolicy: "no-referrer",
  });
  frame.srcdoc = html;
  const download = h("button", { type: "button" }, "Download HTML");
  download.addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const a = h("a", { href: url, download: `shipway-report-${id}.html` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
  return [
    h("div", { class: "crumbs" }, link("#/monitoring", "Monitoring"), " / ", id),
    h("div", { class: "toolbar" }, h("h1", {}, `Report ${id.slice(0, 12)}`), download),
    frame,
  ];
}
