// The public HTTP API, with the operator's bearer token in the Authorization header (never in
// a URL). The token lives in sessionStorage, or in localStorage when asked to remember it.

const KEY = "gridwatch.token";

export class ApiError extends Error {
  constructor(status, code, reason) {
    super(reason || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
}

export function saveToken(text, remember) {
  sessionStorage.setItem(KEY, text);
  if (remember) localStorage.setItem(KEY, text);
  else localStorage.removeItem(KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token()}`, ...extra };
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) search.append(name, one);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function failure(response) {
  let code = "";
  let reason = "";
  try {
    const body = await response.json();
    code = body.error || "";
    reason = body.reason || "";
  } catch {
    reason = response.statusText;
  }
  if (response.status === 401) for (const listener of unauthorizedListeners) listener();
  return new ApiError(response.status, code, reason);
}

export async function get(path, params, { signal } = {}) {
  const response = await fetch(path + query(params), { headers: authHeaders(), signal });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// An image the API serves behind the token, as a blob: URL (revoke it when replaced);
// null when the API has none (404), so the caller shows a placeholder.
export async function blobUrl(path, { signal } = {}) {
  const response = await fetch(path, { headers: authHeaders(), signal, cache: "no-store" });
  if (response.status === 404 || response.status === 503) return null;
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}

// Every page of a cursor-paged listing (events), up to `most` items.
export async function allPages(path, params, most = 5000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...params, ...(cursor ? { cursor } : {}) });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < most);
  return items;
}
