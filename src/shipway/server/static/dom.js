// Building the page from data. Data only ever becomes text nodes or attribute values, never
// markup: there is no innerHTML in this UI.

/** An element: `h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child, [more])`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  el.append(...nodes(children));
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element, same calling convention as `h` (attributes only). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  el.append(...nodes(children));
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "checked" || key === "disabled" || key === "value") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function nodes(children) {
  return children
    .flat(Infinity)
    .filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c)));
}

/** A table: `columns` are `{label, cell: row => content, class?}`; `rowClass(row)` optional. */
export function table(columns, rows, { empty = "Nothing yet.", rowClass } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { class: rowClass?.(row) },
          columns.map((c) => h("td", { class: c.class }, c.cell(row))),
        ),
      ),
    ),
  );
}

/** A definition list of `[label, content]` pairs (pairs with null content are left out). */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function badge(text, tone) {
  return h("span", { class: tone ? `badge ${tone}` : "badge" }, text);
}

const TONES = {
  ok: ["approved", "finished", "running", "promoted", "passed", "true"],
  warn: ["pending", "paused", "starting", "updating", "warning", "inconclusive", "expired"],
  bad: ["rejected", "failed", "aborted", "critical", "stopped", "false"],
};

/** A badge coloured by what the word means (approved is good, failed is bad, ...). */
export function status(word) {
  const text = String(word ?? "-");
  const tone = Object.keys(TONES).find((t) => TONES[t].includes(text));
  return badge(text, tone);
}

/** An ISO time or epoch seconds as "YYYY-MM-DD HH:MM:SS" UTC. */
export function when(value) {
  if (value === null || value === undefined || value === "") return "-";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function num(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : String(+value.toPrecision(5));
}

/** The start of a digest or id (the whole text stays in the tooltip). */
export function short(text, size = 12) {
  if (!text) return "-";
  const bare = String(text).replace(/^sha256:/, "");
  return h("span", { class: "mono", title: String(text) }, bare.length > size ? `${bare.slice(0, size)}…` : bare);
}

export function errorBox(error) {
  return h(
    "div",
    { class: "notice bad", role: "alert" },
    h("strong", {}, error.message ?? String(error)),
    error.hint ? h("div", { class: "muted" }, error.hint) : null,
  );
}

export function section(title, ...content) {
  return [h("h2", {}, title), ...content];
}
