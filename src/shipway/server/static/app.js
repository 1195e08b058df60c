// The shell: log in with a token, the header, and hash routes to each page.
import { api, login, onUnauthorized, token } from "./api.js";
import { errorBox } from "./dom.js";
import * as approvals from "./approvals.js";
import * as audit from "./audit.js";
import * as deployments from "./deployments.js";
import * as pipelines from "./pipelines.js";
import * as models from "./models.js";
import * as monitoring from "./monitoring.js";
import * as runs from "./runs.js";

const PAGES = { models, runs, pipelines, deployments, rollouts: deployments, monitoring, approvals, audit };
const RANK = { viewer: 0, developer: 1, approver: 2, admin: 3 };

const $ = (id) => document.getElementById(id);
const session = {
  me: null,
  /** Whether the user's role is `role` or above (the server checks again anyway). */
  can: (role) => session.me !== null && RANK[session.me.role] >= RANK[role],
  refresh: () => show(),
};
let shown = 0;

function showLogin(message) {
  session.me = null;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("view").hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("token").focus();
}

function showUser() {
  $("who-user").textContent = session.me.user;
  $("who-role").textContent = session.me.role;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("view").hidden = false;
}

async function show() {
  if (!session.me) return;
  const ticket = ++shown;
  const [name = "models", ...args] = location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map(decodeURIComponent);
  const page = PAGES[name] ?? models;
  for (const a of $("nav").querySelectorAll("a")) {
    a.classList.toggle("current", a.dataset.page === (name === "rollouts" ? "deployments" : name));
  }
  const view = $("view");
  view.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await page.render(session, name, ...args);
  } catch (error) {
    if (error.status === 401) return;
    content = errorBox(error);
  }
  if (ticket !== shown) return; // the user moved on meanwhile
  view.replaceChildren(...[content].flat(Infinity).filter((c) => c !== null && c !== undefined));
  view.removeAttribute("aria-busy");
  document.title = `Shipway · ${name}`;
}

async function start(text) {
  session.me = await login(text);
  token.set(text);
  showUser();
  await show();
}

onUnauthorized((error) => {
  token.clear();
  showLogin(`Logged out: ${error.message}`);
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = $("token");
  const text = field.value.trim();
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    await start(text);
    field.value = "";
  } catch (error) {
    showLogin(
      error.status === 401
        ? `That token was not accepted: ${error.message}`
        : `Could not log in: ${error.message}`,
    );
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", () => {
  token.clear();
  history.replaceState(null, "", "#/");
  showLogin();
});

window.addEventListener("hashchange", show);

const saved = token.get();
if (saved) {
  api("/me")
    .then((me) => {
      session.me = me;
      showUser();
      return show();
    })
    .catch((error) => {
      if (error.status !== 401) showLogin(error.message);
    });
} else {
  showLogin();
}
