// Approval requests; approvers decide them here (the server checks the role and four eyes).
import { api, enc } from "./api.js";
import { errorBox, h, link, status, table, when } from "./dom.js";

const filter = { status: "pending" };
let notice = null; // what the last decision did, shown once on the page it refreshed

export async function render(session) {
  const list = await api("/approvals", { query: { status: filter.status } });
  const canDecide = session.can("approver");
  const flash = h("div", { id: "approvals-flash", role: "status" }, notice ? h("p", { class: "notice ok" }, notice) : null);
  notice = null;
  const picker = h(
    "select",
    {
      id: "approval-status",
      onchange: (e) => {
        filter.status = e.target.value;
        session.refresh();
      },
    },
    ["pending", "approved", "rejected", "expired", ""].map((v) =>
      h("option", { value: v, selected: v === filter.status }, v || "all"),
    ),
  );
  const columns = [
    { label: "Request", cell: (a) => h("span", { class: "mono", title: a.id }, a.id.slice(0, 12)) },
    { label: "Version", cell: (a) => link(`#/models/${enc(a.model)}/${a.version}`, `models:/${a.model}/${a.version}`) },
    { label: "Environment", cell: (a) => a.environment },
    { label: "Status", cell: (a) => status(a.status) },
    { label: "Requested", cell: (a) => [a.requested_by, h("div", { class: "muted" }, when(a.requested_at))] },
    { label: "Comment", cell: (a) => a.comment ?? "" },
    {
      label: "Decision",
      cell: (a) =>
        a.policy
          ? `policy ${a.policy}`
          : a.decided_by
            ? [`${a.decided_by}: ${a.decision_comment ?? ""}`, h("div", { class: "muted" }, when(a.decided_at))]
            : "-",
    },
    { label: "Expires", cell: (a) => when(a.expires_at) },
  ];
  if (canDecide) {
    columns.push({ label: "Decide", cell: (a) => (a.status === "pending" ? decide(a, session, flash) : "") });
  }
  return [
    h("h1", {}, "Approvals"),
    h(
      "div",
      { class: "toolbar" },
      h("label", {}, "Status", picker),
      canDecide
        ? null
        : h("p", { class: "muted", id: "cannot-decide" }, `Your role (${session.me.role}) can see approvals; deciding them needs approver.`),
    ),
    flash,
    table(columns, list, { empty: "No approval requests here." }),
  ];
}

function decide(a, session, flash) {
  const own = a.requested_by === session.me.user;
  const comment = h("input", { type: "text", placeholder: "Comment", "aria-label": `Comment on ${a.id}`, disabled: own });
  const act = async (verb) => {
    for (const b of buttons) b.disabled = true;
    try {
      await api(`/approvals/${enc(a.id)}/${verb}`, { method: "POST", body: { comment: comment.value || null } });
      const done = verb === "approve" ? "Approved" : "Rejected";
      notice = `${done} models:/${a.model}/${a.version} for ${a.environment}.`;
      await session.refresh();
    } catch (error) {
      flash.replaceChildren(errorBox(error));
      for (const b of buttons) b.disabled = false;
    }
  };
  const why = own ? "Four eyes: someone else must decide your own request." : null;
  const buttons = [
    h("button", { type: "button", class: "primary", disabled: own, title: why, onclick: () => act("approve") }, "Approve"),
    h("button", { type: "button", class: "danger", disabled: own, title: why, onclick: () => act("reject") }, "Reject"),
  ];
  return h("div", { class: "decide", "data-approval": a.id }, comment, ...buttons);
}
