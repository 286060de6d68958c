/**
 * Calls to /api/v1 with the session cookie (no API key in the page). Every change sends the
 * session's CSRF token, read from the page's meta tag; a 401 sends the browser to sign in.
 */
const meta = (name: string) => document.querySelector(`meta[name="${name}"]`)?.getAttribute("content") ?? "";

export const csrfToken = meta("agentq-csrf-token");
/** AGENTQ_DASHBOARD_READ_ONLY: no action is shown (and the server refuses them). */
export const readOnly = meta("agentq-read-only") === "true";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const signInUrl = () => `/dashboard/login?next=${encodeURIComponent(location.pathname + location.search)}`;

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = csrfToken;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    location.assign(signInUrl());
    throw new ApiError(401, "unauthorized", "signed out");
  }
  if (res.status === 204) return undefined as T;
  const data = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? "error", data?.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

export const api = {
  get: <T>(path: string) => call<T>("GET", path),
  post: <T>(path: string, body?: unknown) => call<T>("POST", path, body),
  put: <T>(path: string, body?: unknown) => call<T>("PUT", path, body),
  del: (path: string) => call<void>("DELETE", path),
};

/** A query string from the defined values (arrays repeat the name). */
export function query(params: Record<string, string | number | readonly string[] | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) for (const v of value) q.append(name, v);
    else q.set(name, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
