/**
 * The web dashboard at /dashboard, served by the API process: the sign-in and sign-out
 * routes, the pages (one shell; the client bundle draws each page from /api/v1), and the
 * client's assets. A visit without a live session is sent to the sign-in page.
 *
 * Registered before the JSON body parser (src/api/body.ts): the sign-in and sign-out forms are
 * application/x-www-form-urlencoded, read here with a small size limit of their own.
 */
import { Elysia, t } from "elysia";
import type { AppDeps } from "../api/deps.ts";
import { AppError } from "../core/errors.ts";
import { cookieHeader, DashboardAuth, isHttps, isSameOrigin, readCookie } from "./auth.ts";
import { htmlPage } from "./html.ts";
import { dashboardShell, loginPage } from "./pages.ts";
import { newToken, tokensEqual } from "./sessions.ts";
import { DASHBOARD_ASSETS_BASE, uiAssets } from "./uiAssets.ts";

export const DASHBOARD_PATH = "/dashboard";
const LOGIN_PATH = `${DASHBOARD_PATH}/login`;
const LOGOUT_PATH = `${DASHBOARD_PATH}/logout`;
/** Double-submit cookie of the sign-in form (there is no session yet to hold its token). */
const LOGIN_COOKIE = "agentq_login";
const LOGIN_COOKIE_SECONDS = 3600;
/** A sign-in or sign-out form is a few hundred bytes. */
const MAX_FORM_BYTES = 8 * 1024;

/** The pages; each is drawn by the client from the path. */
export const DASHBOARD_PAGES = ["", "/tasks", "/tasks/:task_id", "/agents", "/agents/:agent_id"] as const;

/** A form body, read up to MAX_FORM_BYTES. */
export async function readForm(request: Request): Promise<URLSearchParams> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(request.headers.get("content-type") ?? ""))
    throw new AppError("unsupported_media_type", "send the form as application/x-www-form-urlencoded");
  const tooLarge = () => new AppError("payload_too_large", `a form is at most ${MAX_FORM_BYTES} bytes`, { max_bytes: MAX_FORM_BYTES });
  if (Number(request.headers.get("content-length") ?? "0") > MAX_FORM_BYTES) throw tooLarge();
  let text = "";
  if (request.body) {
    const decoder = new TextDecoder();
    let total = 0;
    for await (const chunk of request.body) {
      total += chunk.byteLength;
      if (total > MAX_FORM_BYTES) throw tooLarge();
      text += decoder.decode(chunk, { stream: true });
    }
  }
  return new URLSearchParams(text);
}

/** Where to go after signing in: a dashboard page of ours, never another site or the sign-in page itself. */
export function safeNext(next: string | null | undefined): string {
  if (!next || next.length > 2048 || /[\\\s]/.test(next) || next.startsWith(LOGIN_PATH)) return DASHBOARD_PATH;
  if (next === DASHBOARD_PATH || next.startsWith(`${DASHBOARD_PATH}/`) || next.startsWith(`${DASHBOARD_PATH}?`)) return next;
  return DASHBOARD_PATH;
}

const redirect = (location: string, cookies: string[] = []) => {
  const headers = new Headers({ location, "cache-control": "no-store" });
  for (const c of cookies) headers.append("set-cookie", c);
  return new Response(null, { status: 303, headers });
};

/** The dashboard's routes; none when it is turned off (`auth` null: AGENTQ_DASHBOARD_ENABLED=false). */
export function dashboardRoutes(deps: AppDeps, auth: DashboardAuth | null) {
  if (!auth) return new Elysia({ name: "agentq.dashboard" });
  return enabledDashboardRoutes(deps, auth);
}

function enabledDashboardRoutes(deps: AppDeps, auth: DashboardAuth) {
  const readOnly = deps.config.dashboardReadOnly;

  /** The sign-in page with a fresh form token (and its cookie). */
  async function signInPage(request: Request, next: string, status = 200, error?: string) {
    const formToken = newToken();
    const page = loginPage(await uiAssets(), { next, formToken, readOnly, ...(error ? { error } : {}) });
    const cookie = cookieHeader(LOGIN_COOKIE, formToken, { maxAgeSeconds: LOGIN_COOKIE_SECONDS, secure: isHttps(request) }).replace(
      "Path=/",
      `Path=${LOGIN_PATH}`,
    );
    return htmlPage(page, { status, cacheControl: "no-store", headers: { "set-cookie": cookie } });
  }

  const app = new Elysia({ name: "agentq.dashboard" })
    .get(
      LOGIN_PATH,
      async ({ request, query }) => {
        const next = safeNext(query.next);
        if (await auth.current(request)) return redirect(next);
        return signInPage(request, next);
      },
      { query: t.Object({ next: t.Optional(t.String()) }), detail: { hide: true } },
    )
    .post(
      LOGIN_PATH,
      async ({ request }) => {
        const form = await readForm(request);
        const next = safeNext(form.get("next"));
        const formToken = form.get("_csrf") ?? "";
        const cookieToken = readCookie(request, LOGIN_COOKIE) ?? "";
        if (!isSameOrigin(request) || formToken === "" || !tokensEqual(formToken, cookieToken))
          return signInPage(request, next, 403, "The sign-in form expired or came from another site. Try again.");
        const apiKey = (form.get("api_key") ?? "").trim();
        if (apiKey === "") return signInPage(request, next, 400, "Enter an API key.");
        const signedIn = await auth.signIn(apiKey, request);
        if (!signedIn) {
          deps.logger.info({ event: "dashboard_sign_in_refused" }, "dashboard sign-in refused: unknown or revoked API key");
          return signInPage(request, next, 401, "That API key was refused: it is unknown or has been revoked.");
        }
        deps.logger.info({ event: "dashboard_signed_in", principal: signedIn.session.principal.kind }, "dashboard sign-in");
        const clearForm = cookieHeader(LOGIN_COOKIE, "", { maxAgeSeconds: 0, secure: isHttps(request) }).replace("Path=/", `Path=${LOGIN_PATH}`);
        return redirect(next, [signedIn.cookie, clearForm]);
      },
      { parse: "none", detail: { hide: true } },
    )
    .post(
      LOGOUT_PATH,
      async ({ request }) => {
        const form = await readForm(request);
        const session = await auth.current(request);
        if (session && (!isSameOrigin(request) || !DashboardAuth.csrfMatches(session, form.get("_csrf"))))
          throw new AppError("forbidden", "signing out needs the page's CSRF token");
        return redirect(LOGIN_PATH, [await auth.signOut(request)]);
      },
      { parse: "none", detail: { hide: true } },
    )
    .get(
      `${DASHBOARD_ASSETS_BASE}/:digest/:name`,
      async ({ params, request, status }) =>
        (await uiAssets()).dashboard.respond(params.digest, params.name, request) ?? status(404, { error: { code: "not_found", message: "no such asset" } }),
      { params: t.Object({ digest: t.String(), name: t.String() }), detail: { hide: true } },
    );

  const page = async ({ request }: { request: Request }) => {
    const session = await auth.current(request);
    if (!session) {
      const url = new URL(request.url);
      return redirect(`${LOGIN_PATH}?next=${encodeURIComponent(url.pathname + url.search)}`);
    }
    const html = dashboardShell(await uiAssets(), { csrfToken: session.csrfToken, readOnly, sessionExpiresAt: session.expiresAt });
    return htmlPage(html, { cacheControl: "no-store" });
  };
  for (const path of DASHBOARD_PAGES) app.get(`${DASHBOARD_PATH}${path}`, page, { detail: { hide: true } });
  return app;
}
