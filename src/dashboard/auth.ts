/**
 * Dashboard authentication: sign-in with an API key opens a session (src/dashboard/sessions.ts)
 * held by the browser as a cookie that is HttpOnly, SameSite=Strict, Path=/, Secure behind
 * https, with a Max-Age of the session's lifetime.
 *
 * The pages call the same /api/v1 routes as any client: a request with no X-API-Key but a
 * session cookie is authenticated by its session (createApp's guard calls authorizeApiRequest).
 * Changes are CSRF-safe three ways: the cookie is never sent cross-site (SameSite=Strict), a
 * request from another site is refused by its Sec-Fetch-Site or Origin header, and every
 * change must carry the session's CSRF token (X-CSRF-Token header, or the _csrf field of the
 * sign-out form). Read-only mode refuses every change made with a session (403).
 */
import type { RedisClient } from "../queue/redisClient.ts";
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { KeyVerifier } from "../auth/apiKeys.ts";
import { AppError } from "../core/errors.ts";
import { queueKeys } from "../queue/keys.ts";
import { principalActive, principalOf, SessionStore, tokensEqual, type Session } from "./sessions.ts";

export const SESSION_COOKIE = "agentq_session";
export const CSRF_HEADER = "x-csrf-token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export const isSafeMethod = (method: string) => SAFE_METHODS.has(method.toUpperCase());

/** One cookie's value from a Cookie header, or null. */
export function readCookie(request: Request, name: string): string | null {
  const header = request.headers.get("cookie");
  if (!header) return null;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return null;
}

/** https as the browser sees it: the request itself, or a TLS-terminating proxy's X-Forwarded-Proto. */
export const isHttps = (request: Request) =>
  new URL(request.url).protocol === "https:" || request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() === "https";

export interface CookieOptions {
  maxAgeSeconds: number;
  secure: boolean;
}

export function cookieHeader(name: string, value: string, { maxAgeSeconds, secure }: CookieOptions): string {
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? "; Secure" : ""}`;
}

/**
 * False for a request another site made the browser send: Sec-Fetch-Site (every current
 * browser sends it) must be same-origin, or absent (not a browser, or an old one) with an
 * Origin header, if any, naming the host the request was sent to.
 */
export function isSameOrigin(request: Request): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin";
  const origin = request.headers.get("origin");
  if (origin === null) return true;
  const host = request.headers.get("x-forwarded-host")?.split(",")[0]?.trim() || request.headers.get("host") || new URL(request.url).host;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

export interface DashboardAuthDeps {
  config: Pick<Config, "apiKeys" | "redisPrefix" | "dashboardReadOnly" | "dashboardSessionTtlMs">;
  redis: RedisClient;
  db: Db;
  keys: KeyVerifier;
}

export class DashboardAuth {
  readonly sessions: SessionStore;
  readonly readOnly: boolean;

  constructor(private readonly deps: DashboardAuthDeps) {
    this.sessions = new SessionStore(deps.redis, queueKeys(deps.config.redisPrefix), deps.config.dashboardSessionTtlMs);
    this.readOnly = deps.config.dashboardReadOnly;
  }

  /** Opens a session for a key the API accepts; returns its Set-Cookie header, or null for a refused key. */
  async signIn(apiKey: string, request: Request): Promise<{ cookie: string; session: Session } | null> {
    if (!(await this.deps.keys.verify(apiKey))) return null;
    const { token, session } = await this.sessions.create(principalOf(apiKey, this.deps.config.apiKeys));
    const cookie = cookieHeader(SESSION_COOKIE, token, {
      maxAgeSeconds: Math.floor(this.sessions.ttlMs / 1000),
      secure: isHttps(request),
    });
    return { cookie, session };
  }

  /** Ends the request's session (if any); returns the Set-Cookie header that clears the cookie. */
  async signOut(request: Request): Promise<string> {
    const token = readCookie(request, SESSION_COOKIE);
    if (token) await this.sessions.destroy(token);
    return cookieHeader(SESSION_COOKIE, "", { maxAgeSeconds: 0, secure: isHttps(request) });
  }

  /** The request's live session whose key still opens the API, or null. */
  async current(request: Request): Promise<Session | null> {
    const token = readCookie(request, SESSION_COOKIE);
    if (!token) return null;
    const session = await this.sessions.get(token);
    if (!session) return null;
    if (!(await principalActive(this.deps.db, session.principal, this.deps.config.apiKeys))) {
      await this.sessions.destroy(token);
      return null;
    }
    return session;
  }

  hasSessionCookie(request: Request): boolean {
    return readCookie(request, SESSION_COOKIE) !== null;
  }

  /** Whether a change carries the session's CSRF token (header, or a form's _csrf field). */
  static csrfMatches(session: Session, token: string | null | undefined): boolean {
    return typeof token === "string" && tokensEqual(token, session.csrfToken);
  }

  /**
   * Authenticates an /api/v1 request made by the dashboard (a session cookie, no X-API-Key).
   * Throws 401 without a live session; for a change, 403 when it comes from another site,
   * lacks the CSRF token, or the dashboard is read-only. Returns the session.
   */
  async authorizeApiRequest(request: Request): Promise<Session> {
    const session = await this.current(request);
    if (!session) throw new AppError("unauthorized", "the dashboard session has expired or was signed out; sign in again");
    if (isSafeMethod(request.method)) return session;
    if (!isSameOrigin(request)) throw new AppError("forbidden", "a change to the dashboard must come from the dashboard's own pages");
    if (!DashboardAuth.csrfMatches(session, request.headers.get(CSRF_HEADER)))
      throw new AppError("forbidden", `a change made with a dashboard session needs its CSRF token in the ${CSRF_HEADER} header`);
    if (this.readOnly) throw new AppError("forbidden", "the dashboard is read-only (AGENTQ_DASHBOARD_READ_ONLY): it makes no changes");
    return session;
  }
}
