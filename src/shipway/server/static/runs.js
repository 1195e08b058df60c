// Runs: the list (pick two or more to compare), one run with its metric charts, the comparison.
import { api, enc } from "./api.js";
import { metricCharts } from "./chart.js";
import { badge, facts, h, link, num, section, short, status, table, when } from "./dom.js";
import { kv } from "./models.js";

export async function render(session, _page, id, more) {
  if (id === "compare") return compare((more ?? "").split(",").filter(Boolean));
  if (id) return run(id);
  return list();
}

async function list() {
  const runs = await api("/runs", { query: { limit: 200 } });
  const picked = new Set();
  const button = h("button", { type: "button", class: "primary", id: "compare", disabled: true }, "Compare selected");
  const update = () => {
    button.disabled = picked.size < 2;
    button.textContent = picked.size >= 2 ? `Compare ${picked.size} runs` : "Compare selected";
  };
  button.addEventListener("click", () => {
    location.hash = `#/runs/compare/${[...picked].map(enc).join(",")}`;
  });
  const metricKeys = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort().slice(0, 4);
  return [
    h("h1", {}, "Runs"),
    h("div", { class: "toolbar" }, button, h("span", { class: "muted" }, "Tick two or more runs to compare them.")),
    table(
      [
        {
          label: "",
          cell: (r) =>
            h("input", {
              type: "checkbox",
              "aria-label": `Select run ${r.id}`,
              "data-run": r.id,
              onchange: (e) => {
                if (e.target.checked) picked.add(r.id);
                else picked.delete(r.id);
                update();
              },
            }),
        },
        { label: "Run", cell: (r) => link(`#/runs/${enc(r.id)}`, r.id.slice(0, 12)) },
        { label: "Name", cell: (r) => r.name ?? "" },
        { label: "Experiment", cell: (r) => r.experiment },
        { label: "Status", cell: (r) => status(r.status) },
        { label: "By", cell: (r) => r.actor },
        { label: "Started", cell: (r) => when(r.start_time) },
        ...metricKeys.map((k) => ({ label: k, cell: (r) => num(r.metrics[k]), class: "num" })),
      ],
      runs,
      { empty: "No runs yet." },
    ),
  ];
}

async function run(id) {
  const [info, history] = await Promise.all([api(`/runs/${enc(id)}`), api(`/runs/${enc(id)}/metrics`)]);
  const git = info.environment?.git ?? {};
  const packages = info.environment?.packages ?? {};
  return [
    h("div", { class: "crumbs" }, link("#/runs", "Runs"), " / ", info.id.slice(0, 12)),
    h("h1", {}, info.name ? `${info.name} (${info.id.slice(0, 12)})` : `Run ${info.id.slice(0, 12)}`),
    h(
      "div",
      { class: "panel" },
      facts([
        ["Id", h("span", { class: "mono" }, info.id)],
        ["Experiment", info.experiment],
        ["Status", status(info.status)],
        ["Error", info.error],
        ["By", info.actor],
        ["Started", when(info.start_time)],
        ["Ended", when(info.end_time)],
        ["Code", git.commit ? h("span", {}, short(git.commit), git.dirty ? badge("dirty", "warn") : " clean") : "-"],
        ["Environment lock", packages.lock_digest ? short(packages.lock_digest, 20) : "-"],
        ["Tags", Object.keys(info.tags).length ? h("span", { class: "chips" }, Object.entries(info.tags).map(([k, v]) => badge(`${k}=${v}`))) : "-"],
        ["Models", Object.keys(info.models).length ? Object.keys(info.models).join(", ") : "-"],
      ]),
    ),
    section("Metrics", metricCharts([{ name: info.id.slice(0, 12), metrics: history.metrics }])),
    h("div", { class: "grid2" }, h("div", {}, section("Parameters", kv(info.params, "No parameters."))), h("div", {}, section("Latest metric values", kv(info.metrics, "No metrics.")))),
    section(
      "Datasets",
      table(
        [
          { label: "Name", cell: (d) => d.name },
          { label: "Role", cell: (d) => d.role ?? "-" },
          { label: "Rows", cell: (d) => num(d.num_rows), class: "num" },
          { label: "Content hash", cell: (d) => h("span", { class: "mono" }, d.content_hash) },
        ],
        info.datasets,
        { empty: "No datasets logged." },
      ),
    ),
  ];
}

async function compare(ids) {
  if (ids.length < 2) return h("p", {}, "Pick two or more runs on the ", link("#/runs", "Runs"), " page.");
  const runs = await Promise.all(ids.map((id) => api(`/runs/${enc(id)}`)));
  const histories = await Promise.all(runs.map((r) => api(`/runs/${enc(r.id)}/metrics`)));
  const label = (r) => r.name ?? r.id.slice(0, 12);
  const grid = (title, pick) => {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(pick(r))))].sort();
    const differs = (k) => new Set(runs.map((r) => JSON.stringify(pick(r)[k] ?? null))).size > 1;
    return section(
      title,
      table(
        [
          { label: "", cell: (k) => k },
          ...runs.map((r) => ({ label: label(r), cell: (k) => (k in pick(r) ? num(pick(r)[k]) : "-"), class: "num" })),
        ],
        keys,
        { empty: `No ${title.toLowerCase()}.`, rowClass: (k) => (differs(k) ? "differs" : null) },
      ),
    );
  };
  return [
    h("div", { class: "crumbs" }, link("#/runs", "Runs"), " / compare"),
    h("h1", {}, `Comparing ${runs.length} runs`),
    h("p", { class: "muted" }, "Highlighted rows differ between the runs."),
    table(
      [
        { label: "Run", cell: (r) => link(`#/runs/${enc(r.id)}`, r.id.slice(0, 12)) },
        { label: "Name", cell: (r) => r.name ?? "" },
        { label: "Experiment", cell: (r) => r.experiment },
        { label: "Status", cell: (r) => status(r.status) },
        { label: "Started", cell: (r) => when(r.start_time) },
      ],
      runs,
    ),
    h("div", { id: "compare-params" }, grid("Parameters", (r) => r.params)),
    h("div", { id: "compare-metrics" }, grid("Metrics", (r) => r.metrics)),
    section("Metric history", metricCharts(runs.map((r, i) => ({ name: label(r), metrics: histories[i].metrics })))),
  ];
}
