// Talking to the Stockstream API: the key, JSON, and problem documents as errors.
//
// The key is typed in by the operator (never shipped in these files) and kept in this
// tab's sessionStorage: it is gone when the tab closes, and no other site can read it.
// It goes out as `x-functions-key`, as Azure and the embedded host expect.

const KEY_ITEM = "stockstream.key";

// The API lives next to the console: /api/console/ -> /api/ (on both hosts).
export const API_BASE = new URL("../", import.meta.url);

export function currentKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || "";
  } catch {
    return "";
  }
}

export function saveKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
  document.dispatchEvent(new CustomEvent("keychange"));
}

/** An answer that was not a success: the problem document's words, or what went wrong. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || "";
    this.code = typeof problem.type === "string" ? problem.type.split(":").pop() : "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.problem = problem;
  }

  /** Whether a (different) key would help: 401 from the host. */
  get needsKey() {
    return this.status === 401;
  }
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      if (body && typeof body === "object") return body;
    } catch {
      // not JSON after all: fall through to the status line
    }
  }
  return { title: `HTTP ${response.status} ${response.statusText}`.trim(), detail: "" };
}

/**
 * Send a request to the API (`path` relative to /api/, or an absolute /api/... path).
 * Resolves with the parsed JSON (or a Blob with `as: "blob"`); rejects with ApiError.
 */
export async function api(path, { method = "GET", body, as = "json", signal } = {}) {
  const headers = { Accept: as === "json" ? "application/json" : "*/*" };
  const key = currentKey();
  if (key) headers["x-functions-key"] = key;
  const init = { method, headers, cache: "no-store", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, {
      title: "The service cannot be reached",
      detail: `${error.message}. Is the host running?`,
    });
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return as === "blob" ? response.blob() : response.json();
}

/** `encodeURIComponent` for one path segment. */
export const seg = encodeURIComponent;
