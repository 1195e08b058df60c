// Deployments per environment, and canary rollouts with their steps and analysis verdicts.
import { api, enc } from "./api.js";
import { facts, h, link, num, section, status, table, when } from "./dom.js";

export async function render(session, page, id) {
  if (page === "rollouts" && id) return rollout(await api(`/rollouts/${enc(id)}`), true);
  if (id) return deployment(id);
  const [deps, rollouts] = await Promise.all([api("/deployments"), api("/rollouts")]);
  return [
    h("h1", {}, "Deployments"),
    table(
      [
        { label: "Environment", cell: (d) => link(`#/deployments/${enc(d.environment)}`, d.environment) },
        { label: "Model", cell: (d) => link(`#/models/${enc(d.model)}/${d.version}`, `${d.model} v${d.version}`) },
        { label: "Live version", cell: (d) => (d.live_version ? `v${d.live_version}` : "-") },
        { label: "Since", cell: (d) => when(d.since) },
        { label: "Status", cell: (d) => status(d.status) },
        { label: "Replicas", cell: (d) => d.replicas, class: "num" },
        { label: "Runtime", cell: (d) => d.runtime },
        { label: "Address", cell: (d) => h("span", { class: "mono" }, d.url) },
      ],
      deps,
      { empty: "Nothing deployed yet: shipway deploy models:/NAME/VERSION --env staging." },
    ),
    section("Rollouts", rolloutTable(rollouts)),
  ];
}

function rolloutTable(rollouts) {
  return table(
    [
      { label: "Rollout", cell: (r) => link(`#/rollouts/${enc(r.id)}`, r.id) },
      { label: "Environment", cell: (r) => r.environment },
      { label: "Model", cell: (r) => r.model },
      { label: "Stable → canary", cell: (r) => `v${r.stable_version} → v${r.canary_version}` },
      { label: "Status", cell: (r) => status(r.status) },
      { label: "Canary weight", cell: (r) => `${num(r.weight)}%`, class: "num" },
      { label: "Step", cell: (r) => `${r.step_index + 1} of ${r.steps.length}` },
      { label: "Started", cell: (r) => when(r.started_at) },
    ],
    rollouts,
    { empty: "No rollouts yet." },
  );
}

async function deployment(environment) {
  const d = await api(`/deployments/${enc(environment)}`);
  return [
    h("div", { class: "crumbs" }, link("#/deployments", "Deployments"), " / ", environment),
    h("h1", {}, environment),
    h(
      "div",
      { class: "panel" },
      facts([
        ["Model", link(`#/models/${enc(d.model)}/${d.version}`, `models:/${d.model}/${d.version}`)],
        ["Live version", d.live_version ? `v${d.live_version}` : "-"],
        ["Since", when(d.since)],
        ["Status", status(d.status)],
        ["Message", d.message],
        ["Agent", d.agent_alive ? `running (pid ${d.agent_pid})` : "not running"],
        ["Replicas", String(d.replicas)],
        ["Runtime", d.runtime],
        ["Image", d.image],
        ["Address", h("span", { class: "mono" }, d.url)],
      ]),
    ),
    d.rollout ? rollout(d.rollout, false) : section("Latest rollout", h("p", { class: "empty" }, "No rollout in this environment.")),
  ];
}

function rollout(r, standalone) {
  const steps = h(
    "div",
    { class: "steps", id: "rollout-steps" },
    r.steps.map((step, i) => {
      const state = i < r.step_index || (i === r.step_index && r.status === "promoted") ? "done" : i === r.step_index && r.status !== "aborted" && r.status !== "failed" ? "current" : "";
      return h("span", { class: `step ${state}`, title: `step ${i + 1}` }, step === "pause" ? "pause" : `${step}%`);
    }),
  );
  const verdict = (e) => (e.inconclusive ? "inconclusive" : e.passed ? "passed" : "failed");
  return [
    standalone ? h("div", { class: "crumbs" }, link("#/deployments", "Deployments"), " / rollout ", r.id) : null,
    h(standalone ? "h1" : "h2", {}, `Rollout ${r.id}`),
    h(
      "div",
      { class: "panel", id: "rollout" },
      facts([
        ["Environment", link(`#/deployments/${enc(r.environment)}`, r.environment)],
        ["Model", `${r.model}: v${r.stable_version} (stable) → v${r.canary_version} (canary)`],
        ["Status", status(r.status)],
        ["Reason", r.reason],
        ["Canary weight", h("strong", { id: "rollout-weight" }, `${num(r.weight)}%`)],
        ["Steps", steps],
        ["Analysis", `every ${num(r.interval_s)} s; fails after ${r.failure_limit} failed analysis (${r.failures} so far)`],
        ["Started", when(r.started_at)],
        ["Updated", when(r.updated_at)],
      ]),
    ),
    section(
      "Analyses",
      table(
        [
          { label: "Time", cell: (e) => when(e.time) },
          { label: "Step", cell: (e) => e.step + 1, class: "num" },
          { label: "Weight", cell: (e) => `${num(e.weight)}%`, class: "num" },
          { label: "Verdict", cell: (e) => status(verdict(e)) },
          { label: "Reasons", cell: (e) => h("ul", {}, e.reasons.map((why) => h("li", {}, why))) },
        ],
        r.history,
        { empty: "No analysis yet." },
      ),
    ),
  ];
}
