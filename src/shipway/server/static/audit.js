// The audit log with filters, and a check of its hash chain.
import { api } from "./api.js";
import { errorBox, h, table, when } from "./dom.js";

const filters = { actor: "", action: "", subject: "", limit: 200 };

export async function render(session) {
  const entries = await api("/audit", { query: filters });
  const field = (name, label, hint) =>
    h("label", {}, label, h("input", { type: "text", name, value: filters[name], placeholder: hint, "data-filter": name }));
  const form = h(
    "form",
    { class: "toolbar", id: "audit-filters" },
    field("actor", "Actor", "exact user"),
    field("action", "Action", "alias.set, run.create…"),
    field("subject", "Subject starts with", "model:credit"),
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("button", { type: "button", id: "audit-clear", onclick: () => { Object.assign(filters, { actor: "", action: "", subject: "" }); session.refresh(); } }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const input of form.querySelectorAll("input[data-filter]")) filters[input.dataset.filter] = input.value.trim();
    session.refresh();
  });
  const result = h("div", { id: "verify-result", role: "status" });
  const verify = h("button", { type: "button", id: "verify" }, "Verify chain");
  verify.addEventListener("click", async () => {
    verify.disabled = true;
    try {
      const report = await api("/audit/verify");
      result.replaceChildren(
        report.ok
          ? h("p", { class: "notice ok" }, `The chain is intact: ${report.checked} entries checked.`)
          : h("p", { class: "notice bad" }, `The chain is broken at entry ${report.first_bad_seq}: ${report.problem}`),
      );
    } catch (error) {
      result.replaceChildren(errorBox(error));
    } finally {
      verify.disabled = false;
    }
  });
  const change = (e) => {
    if (!e.before && !e.after) return "";
    return h("details", {}, h("summary", {}, "changes"), h("pre", { class: "json mono" }, JSON.stringify({ before: e.before, after: e.after }, null, 1)));
  };
  return [
    h("h1", {}, "Audit log"),
    h("div", { class: "toolbar" }, verify, result),
    form,
    h("p", { class: "muted" }, `${entries.length} entries, newest last${entries.length >= filters.limit ? ` (the latest ${filters.limit})` : ""}.`),
    table(
      [
        { label: "#", cell: (e) => e.seq, class: "num" },
        { label: "Time", cell: (e) => when(e.time) },
        { label: "Actor", cell: (e) => e.actor },
        { label: "From", cell: (e) => e.source ?? "-" },
        { label: "Action", cell: (e) => e.action },
        { label: "Subject", cell: (e) => h("span", { class: "mono" }, e.subject) },
        { label: "Change", cell: change },
      ],
      entries,
      { empty: "No audit entries match." },
    ),
  ];
}
