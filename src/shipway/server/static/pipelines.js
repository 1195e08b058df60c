// Pipeline runs: which commit, each stage with its status, duration and checks.
import { api, enc } from "./api.js";
import { facts, h, link, num, section, status, table, when } from "./dom.js";

export async function render(session, page, id) {
  if (id) return run(await api(`/pipelines/${enc(id)}`));
  const runs = await api("/pipelines");
  return [
    h("h1", {}, "Pipelines"),
    table(
      [
        { label: "Run", cell: (r) => link(`#/pipelines/${enc(r.id)}`, r.id) },
        { label: "Model", cell: (r) => r.model },
        { label: "Commit", cell: (r) => h("span", { class: "mono" }, (r.commit || "-").slice(0, 12) + (r.dirty ? "+dirty" : "")) },
        { label: "Branch", cell: (r) => r.branch || "-" },
        { label: "Trigger", cell: (r) => r.trigger },
        { label: "Status", cell: (r) => status(r.status) },
        { label: "Stages", cell: (r) => r.stages.map((s) => `${mark(s.status)} ${s.name}`).join("  ") },
        { label: "Started", cell: (r) => when(r.started_at) },
        { label: "Took", cell: (r) => (r.seconds == null ? "-" : `${num(r.seconds)} s`), class: "num" },
      ],
      runs,
      { empty: "No pipeline runs yet: shipway pipeline run." },
    ),
  ];
}

function mark(word) {
  return { passed: "✓", failed: "✗", skipped: "↷", running: "▶", waiting: "…" }[word] || "?";
}

function run(r) {
  const rows = [];
  for (const s of r.stages) {
    rows.push({ stage: s.name, kind: s.kind, status: s.status, took: s.seconds, detail: s.detail || "" });
    for (const c of s.checks) {
      rows.push({ stage: `  ${c.name}`, kind: "check", status: c.passed ? "passed" : "failed", took: null, detail: c.detail || "" });
    }
  }
  return [
    h("div", { class: "crumbs" }, link("#/pipelines", "Pipelines"), " / ", r.id),
    h("h1", {}, `Pipeline run ${r.id}`),
    h(
      "div",
      { class: "panel" },
      facts([
        ["Model", r.model],
        ["Commit", h("span", { class: "mono" }, (r.commit || "-") + (r.dirty ? " (dirty)" : ""))],
        ["Branch", r.branch || "-"],
        ["Trigger", r.trigger],
        ["Status", status(r.status)],
        ["Summary", r.summary],
        ["Started", when(r.started_at)],
        ["Candidate", r.context.uri || "-"],
      ]),
    ),
    section(
      "Stages",
      table(
        [
          { label: "Stage", cell: (x) => x.stage },
          { label: "Kind", cell: (x) => x.kind },
          { label: "Status", cell: (x) => status(x.status) },
          { label: "Took", cell: (x) => (x.took == null ? "" : `${num(x.took)} s`), class: "num" },
          { label: "Detail", cell: (x) => x.detail },
        ],
        rows,
        { empty: "No stage has run." },
      ),
    ),
  ];
}
