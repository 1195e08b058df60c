// The REST API, with the token from this tab's sessionStorage as a bearer header.
// The token never goes into a URL, a cookie or localStorage.

const KEY = "shipway.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint ?? null;
  }
}

let unauthorized = () => {};

/** Called (once per refusal) when the server no longer accepts the token. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Call `/api/v1` + `path`; JSON in and out (or the body as text with `as: "text"`). */
export async function api(path, { method = "GET", body, query, as = "json" } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: as === "json" ? "application/json" : "text/html" };
  const bearer = token.get();
  if (bearer && path !== "/login") headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch {
    throw new ApiError(0, "The server does not answer.", "Check that `shipway server` is running.");
  }
  if (!response.ok) {
    let data = {};
    try {
      data = await response.json();
    } catch {
      // not JSON: keep the status line
    }
    const error = new ApiError(
      response.status,
      data.error ?? `${response.status} ${response.statusText}`,
      data.hint,
    );
    if (response.status === 401 && path !== "/login") unauthorized(error);
    throw error;
  }
  return as === "json" ? response.json() : response.text();
}

/** Ask the server whose token this is; an ApiError (401) when it is not accepted. */
export function login(text) {
  return api("/login", { method: "POST", body: { token: text } });
}

export const enc = encodeURIComponent;
