// Registered models, their versions, and one version's lineage.
import { api, enc } from "./api.js";
import { badge, facts, h, link, num, section, short, status, table, when } from "./dom.js";

export async function render(session, _page, name, version) {
  if (name && version) return lineage(name, version);
  if (name) return model(name);
  const list = await api("/models");
  return [
    h("h1", {}, "Models"),
    table(
      [
        { label: "Model", cell: (m) => link(`#/models/${enc(m.name)}`, m.name) },
        { label: "Latest", cell: (m) => m.latest_version ?? "-", class: "num" },
        { label: "Versions", cell: (m) => m.versions, class: "num" },
        { label: "Aliases", cell: (m) => aliases(m.aliases) },
        { label: "Description", cell: (m) => m.description ?? "" },
        { label: "Created", cell: (m) => when(m.created_at) },
      ],
      list,
      { empty: "No registered models yet: shipway models register RUN NAME." },
    ),
  ];
}

function aliases(map) {
  const entries = Object.entries(map ?? {});
  if (!entries.length) return "-";
  return h("span", { class: "chips" }, entries.map(([a, v]) => badge(`${a} → v${v}`)));
}

async function model(name) {
  const data = await api(`/models/${enc(name)}`);
  const versions = [...data.versions].sort((a, b) => b.version - a.version);
  return [
    h("div", { class: "crumbs" }, link("#/models", "Models"), " / ", name),
    h("h1", {}, name),
    data.model.description ? h("p", {}, data.model.description) : null,
    table(
      [
        {
          label: "Version",
          cell: (v) => link(`#/models/${enc(name)}/${v.version}`, `v${v.version}`),
        },
        { label: "Aliases", cell: (v) => h("span", { class: "chips" }, v.aliases.map((a) => badge(a))) },
        { label: "Flavour", cell: (v) => v.flavor },
        { label: "Run", cell: (v) => (v.run_id ? link(`#/runs/${enc(v.run_id)}`, v.run_id.slice(0, 12)) : "-") },
        { label: "Registered by", cell: (v) => v.created_by },
        { label: "Registered", cell: (v) => when(v.created_at) },
        { label: "State", cell: (v) => (v.archived ? badge("archived") : "") },
      ],
      versions,
    ),
  ];
}

async function lineage(name, version) {
  const uri = `models:/${name}/${version}`;
  const data = await api("/lineage", { query: { uri } });
  const m = data.model;
  const run = data.run;
  const code = data.code ?? {};
  const env = data.environment ?? {};
  const packages = env.packages ?? {};
  const mon = data.monitoring;
  return [
    h("div", { class: "crumbs" }, link("#/models", "Models"), " / ", link(`#/models/${enc(name)}`, name), ` / v${version}`),
    h("h1", {}, uri),
    h(
      "div",
      { class: "grid2" },
      h(
        "div",
        { class: "panel", id: "summary" },
        facts([
          ["Aliases", m.aliases.length ? h("span", { class: "chips" }, m.aliases.map((a) => badge(a))) : "-"],
          ["Live in", data.live_in.length ? h("span", { class: "chips" }, data.live_in.map((e) => badge(e, "ok"))) : "nowhere"],
          ["Flavour", m.flavor],
          ["Manifest", short(m.manifest_digest, 20)],
          ["Registered", `${when(m.created_at)} by ${m.created_by}`],
          ["Run", run ? link(`#/runs/${enc(run.id)}`, `${run.id.slice(0, 12)} (${run.experiment})`) : "registered without a run"],
          ["Code", code.commit ? h("span", {}, short(code.commit, 12), code.dirty ? badge("dirty", "warn") : " clean") : "not in a git repository"],
          ["Environment", `Python ${env.python ?? "?"} on ${env.platform ?? "?"}`],
          ["Environment lock", packages.lock_digest ? h("span", {}, short(packages.lock_digest, 20), ` (${packages.count ?? "?"} packages)`) : "-"],
          ["Seeds", env.seeds ? JSON.stringify(env.seeds) : "-"],
        ]),
      ),
      h(
        "div",
        { class: "panel", id: "monitoring-status" },
        h("strong", {}, "Monitoring"),
        mon
          ? facts([
              ["Latest result", link(`#/monitoring/${enc(mon.result)}`, when(mon.time))],
              ["On version", mon.version ?? "-"],
              ["Rows", num(mon.rows)],
              ["Dataset drift", mon.dataset_drift ? badge("drifted", "warn") : badge("no drift", "ok")],
              ["Drifted features", mon.drifted_features.join(", ") || "none"],
              ["Worst alert", mon.worst_alert ? status(mon.worst_alert) : "none"],
            ])
          : h("p", { class: "muted" }, "No monitoring result yet."),
      ),
    ),
    section(
      "Deployments",
      table(
        [
          { label: "Environment", cell: (d) => link(`#/deployments/${enc(d.environment)}`, d.environment) },
          { label: "Live version", cell: (d) => (d.this_version ? badge("this version", "ok") : d.live_version ? `v${d.live_version}` : "-") },
          { label: "Since", cell: (d) => when(d.since) },
          { label: "Status", cell: (d) => status(d.status) },
          { label: "Runtime", cell: (d) => d.runtime },
          { label: "Image", cell: (d) => (d.image ? short(d.image, 40) : "-") },
        ],
        data.deployments,
        { empty: "Not deployed anywhere." },
      ),
    ),
    section(
      "Datasets",
      table(
        [
          { label: "Name", cell: (d) => d.name },
          { label: "Role", cell: (d) => d.role ?? "-" },
          { label: "Rows", cell: (d) => num(d.num_rows), class: "num" },
          { label: "Content hash (SHA-256)", cell: (d) => h("span", { class: "mono" }, d.content_hash) },
        ],
        data.datasets,
        { empty: "No datasets logged with the run." },
      ),
    ),
    section(
      "Approvals",
      table(
        [
          { label: "Environment", cell: (a) => a.environment },
          { label: "Status", cell: (a) => status(a.status) },
          { label: "Requested", cell: (a) => `${a.requested_by}, ${when(a.requested_at)}` },
          { label: "Decided", cell: (a) => (a.policy ? `policy ${a.policy}` : a.decided_by ? `${a.decided_by}, ${when(a.decided_at)}` : "-") },
          { label: "Comments", cell: (a) => [a.comment, a.decision_comment].filter(Boolean).join(" / ") || "-" },
        ],
        data.approvals,
        { empty: "No approval requests for this version." },
      ),
    ),
    section(
      "Images",
      table(
        [
          { label: "Tag", cell: (i) => h("span", { class: "mono" }, i.tag) },
          { label: "Image id", cell: (i) => short(i.image_id) },
          { label: "Size", cell: (i) => `${(i.size_bytes / 1e6).toFixed(0)} MB`, class: "num" },
          { label: "Lock", cell: (i) => short(i.lock_digest) },
          { label: "Pushed", cell: (i) => i.pushed_ref ?? "-" },
          { label: "Built", cell: (i) => `${when(i.created_at)} by ${i.created_by}` },
        ],
        data.images,
        { empty: "No images built." },
      ),
    ),
    run ? section("Run parameters and metrics", h("div", { class: "grid2" }, kv(run.params, "No parameters."), kv(run.metrics, "No metrics."))) : null,
    section(
      "Alias history",
      table(
        [
          { label: "Time", cell: (e) => when(e.time) },
          { label: "Alias", cell: (e) => e.subject },
          { label: "Move", cell: (e) => (e.action === "alias.delete" ? `v${e.from} → deleted` : e.from ? `v${e.from} → v${e.to}` : `→ v${e.to}`) },
          { label: "By", cell: (e) => e.actor },
        ],
        data.alias_history,
        { empty: "No alias moves." },
      ),
    ),
  ];
}

export function kv(map, empty) {
  const rows = Object.entries(map ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return table(
    [
      { label: "Key", cell: ([k]) => k },
      { label: "Value", cell: ([, v]) => num(v), class: "num" },
    ],
    rows,
    { empty },
  );
}
