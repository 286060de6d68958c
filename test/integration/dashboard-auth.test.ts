/**
 * The dashboard's sign-in, sessions and CSRF rules through the real app (app.handle), real
 * PostgreSQL and Redis: what a browser cannot easily forge is forged here (cross-site
 * requests, missing tokens, revoked keys, expired sessions, oversized forms). The same flows
 * in a real browser: test/browser/.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { createApiKey, revokeApiKey } from "../../src/auth/apiKeys.ts";
import { CONTENT_SECURITY_POLICY } from "../../src/dashboard/html.ts";
import { safeNext } from "../../src/dashboard/index.ts";
import { isSameOrigin, readCookie } from "../../src/dashboard/auth.ts";
import { SessionStore } from "../../src/dashboard/sessions.ts";
import { queueKeys } from "../../src/queue/keys.ts";

let ctx: TestContext;
let readOnly: TestContext;
let disabled: TestContext;

beforeAll(async () => {
  [ctx, readOnly, disabled] = await Promise.all([
    createTestContext(),
    createTestContext({ dashboardReadOnly: true }),
    createTestContext({ dashboardEnabled: false }),
  ]);
});
afterAll(async () => {
  await Promise.all([ctx?.close(), readOnly?.close(), disabled?.close()]);
});

const ORIGIN = "http://localhost";

/** A raw request to the app, like a browser's (no API key). */
async function send(app: TestContext, method: string, path: string, init: { headers?: Record<string, string>; body?: string } = {}) {
  return app.app.handle(new Request(`${ORIGIN}${path}`, { method, headers: init.headers, body: init.body }));
}

const cookieValue = (res: Response, name: string) => {
  for (const c of res.headers.getSetCookie()) if (c.startsWith(`${name}=`)) return c.slice(name.length + 1).split(";")[0]!;
  return null;
};
const setCookie = (res: Response, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`)) ?? null;

/** The error of a response in the API's error shape. */
const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = { "content-type": "application/x-www-form-urlencoded" };

/** The sign-in form's token and cookie, as a browser gets them from GET /dashboard/login. */
async function loginForm(app: TestContext) {
  const res = await send(app, "GET", "/dashboard/login");
  const html = await res.text();
  const token = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
  return { token, cookie: `agentq_login=${cookieValue(res, "agentq_login")}` };
}

/** Signs in with `key`; returns the session cookie header and the page's CSRF token. */
async function signIn(app: TestContext, key = TEST_API_KEY) {
  const { token, cookie } = await loginForm(app);
  const res = await send(app, "POST", "/dashboard/login", {
    headers: { ...FORM, cookie, "sec-fetch-site": "same-origin" },
    body: form({ _csrf: token, api_key: key, next: "/dashboard/tasks" }),
  });
  expect(res.status).toBe(303);
  const session = `agentq_session=${cookieValue(res, "agentq_session")}`;
  const shell = await (await send(app, "GET", "/dashboard", { headers: { cookie: session } })).text();
  const csrf = /name="agentq-csrf-token" content="([^"]+)"/.exec(shell)![1]!;
  return { session, csrf };
}

describe("sign-in", () => {
  test("a page without a session sends the browser to the sign-in page, keeping where it was going", async () => {
    const res = await send(ctx, "GET", "/dashboard/tasks?status=failed");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe(`/dashboard/login?next=${encodeURIComponent("/dashboard/tasks?status=failed")}`);
    for (const path of ["/dashboard", "/dashboard/agents", `/dashboard/agents/x`, "/dashboard/tasks/x"])
      expect((await send(ctx, "GET", path)).status).toBe(303);
  });

  test("the sign-in page is a form with a CSRF token in a cookie of its own, under our CSP", async () => {
    const res = await send(ctx, "GET", "/dashboard/login?next=/dashboard/agents");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    const html = await res.text();
    expect(html).toContain('<form method="post" action="/dashboard/login"');
    expect(html).toContain('name="next" value="/dashboard/agents"');
    expect(html).not.toContain("<script");
    expect(setCookie(res, "agentq_login")).toMatch(/^agentq_login=[A-Za-z0-9_-]{43}; Path=\/dashboard\/login; HttpOnly; SameSite=Strict; Max-Age=3600$/);
  });

  test("a bad key is refused with a message (401), an empty one asks for a key (400)", async () => {
    const { token, cookie } = await loginForm(ctx);
    const bad = await send(ctx, "POST", "/dashboard/login", { headers: { ...FORM, cookie }, body: form({ _csrf: token, api_key: "not-a-key-0123456789" }) });
    expect(bad.status).toBe(401);
    expect(await bad.text()).toContain("That API key was refused: it is unknown or has been revoked.");
    expect(setCookie(bad, "agentq_session")).toBeNull();
    const empty = await send(ctx, "POST", "/dashboard/login", { headers: { ...FORM, cookie }, body: form({ _csrf: token, api_key: "  " }) });
    expect(empty.status).toBe(400);
    expect(await empty.text()).toContain("Enter an API key.");
  });

  test("a good key opens a session: an HttpOnly, SameSite=Strict cookie for the session's lifetime, Secure behind https", async () => {
    const { token, cookie } = await loginForm(ctx);
    const body = form({ _csrf: token, api_key: TEST_API_KEY, next: "/dashboard/agents" });
    const res = await send(ctx, "POST", "/dashboard/login", { headers: { ...FORM, cookie }, body });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/agents");
    expect(setCookie(res, "agentq_session")).toMatch(/^agentq_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=28800$/);
    // The form's cookie is spent.
    expect(setCookie(res, "agentq_login")).toContain("Max-Age=0");
    const https = await send(ctx, "POST", "/dashboard/login", { headers: { ...FORM, cookie, "x-forwarded-proto": "https" }, body });
    expect(setCookie(https, "agentq_session")).toEndWith("; Secure");
  });

  test("the session is kept server side: Redis holds its hash, never the token or the API key", async () => {
    const { session } = await signIn(ctx);
    const token = session.split("=")[1]!;
    const keys = await ctx.redis.keys(`${ctx.config.redisPrefix}:{coverage}:dashboard:session:*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key).not.toContain(token);
      const value = (await ctx.redis.get(key))!;
      expect(value).not.toContain(TEST_API_KEY);
      expect(value).not.toContain(token);
      const ttl = await ctx.redis.pttl(key);
      expect(ttl).toBeGreaterThan(28_000_000);
      expect(ttl).toBeLessThanOrEqual(28_800_000);
    }
  });

  test("a sign-in without the form's token, with another token, or from another site is refused (403)", async () => {
    const { token, cookie } = await loginForm(ctx);
    const key = { api_key: TEST_API_KEY };
    const cases: [string, Record<string, string>, Record<string, string>][] = [
      ["no token", { ...FORM, cookie }, key],
      ["no cookie", FORM, { ...key, _csrf: token }],
      ["other token", { ...FORM, cookie }, { ...key, _csrf: "x".repeat(43) }],
      ["cross-site", { ...FORM, cookie, "sec-fetch-site": "cross-site" }, { ...key, _csrf: token }],
      ["other origin", { ...FORM, cookie, origin: "https://evil.example" }, { ...key, _csrf: token }],
    ];
    for (const [what, headers, fields] of cases) {
      const res = await send(ctx, "POST", "/dashboard/login", { headers, body: form(fields) });
      expect({ what, status: res.status, session: setCookie(res, "agentq_session") }).toEqual({ what, status: 403, session: null });
      expect(await res.text()).toContain("The sign-in form expired or came from another site.");
    }
  });

  test("a form must be url-encoded and small", async () => {
    const { token, cookie } = await loginForm(ctx);
    const json = await send(ctx, "POST", "/dashboard/login", { headers: { "content-type": "application/json", cookie }, body: JSON.stringify({ api_key: TEST_API_KEY }) });
    expect(json.status).toBe(415);
    const big = await send(ctx, "POST", "/dashboard/login", { headers: { ...FORM, cookie }, body: form({ _csrf: token, api_key: "k".repeat(9000) }) });
    expect(big.status).toBe(413);
    const streamed = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`_csrf=${token}&api_key=`));
        controller.enqueue(new TextEncoder().encode("k".repeat(9000)));
        controller.close();
      },
    });
    const res = await ctx.app.handle(new Request(`${ORIGIN}/dashboard/login`, { method: "POST", headers: { ...FORM, cookie }, body: streamed }));
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe("payload_too_large");
  });

  test("after signing in, the browser goes only to a dashboard page of ours", () => {
    expect(safeNext("/dashboard/tasks?status=failed")).toBe("/dashboard/tasks?status=failed");
    expect(safeNext("/dashboard")).toBe("/dashboard");
    for (const next of [null, "", "//evil.example/", "https://evil.example/dashboard", "/dashboardx", "/dashboard/login", "/api/v1/tasks", "/dashboard/\\evil", "/dashboard /x"])
      expect(safeNext(next)).toBe("/dashboard");
  });

  test("signed in, the sign-in page sends the browser on", async () => {
    const { session } = await signIn(ctx);
    const res = await send(ctx, "GET", "/dashboard/login?next=/dashboard/agents", { headers: { cookie: session } });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/agents");
  });
});

describe("pages and the API with a session", () => {
  test("the pages are the client's shell under our CSP, with the session's CSRF token and never cached", async () => {
    const { session, csrf } = await signIn(ctx);
    for (const path of ["/dashboard", "/dashboard/tasks", "/dashboard/tasks/agent-coverage-x", "/dashboard/agents", "/dashboard/agents/y"]) {
      const res = await send(ctx, "GET", path, { headers: { cookie: session } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const html = await res.text();
      expect(html).toContain(`content="${csrf}"`);
      expect(html).toContain('name="agentq-read-only" content="false"');
      expect(html).toMatch(/<script type="module" src="\/dashboard\/assets\/[0-9a-f]{16}\/dashboard\.js"><\/script>/);
    }
  });

  test("the client's assets are served from our origin, with a digest in the URL", async () => {
    const { session } = await signIn(ctx);
    const html = await (await send(ctx, "GET", "/dashboard", { headers: { cookie: session } })).text();
    for (const asset of html.matchAll(/(?:src|href)="(\/dashboard\/assets\/[^"]+)"/g)) {
      const res = await send(ctx, "GET", asset[1]!);
      expect({ asset: asset[1], status: res.status }).toEqual({ asset: asset[1], status: 200 });
      expect(res.headers.get("cache-control")).toContain("immutable");
    }
    expect((await send(ctx, "GET", "/dashboard/assets/0000000000000000/dashboard.js")).status).toBe(404);
    expect((await send(ctx, "GET", "/dashboard/assets/0000000000000000/nope.js")).status).toBe(404);
  });

  test("the session opens /api/v1 for reads; a change needs the CSRF token and must come from our pages", async () => {
    const { session, csrf } = await signIn(ctx);
    const agent = { name: "made from the dashboard", taxonomy_node_ids: [] as string[] };
    const get = await send(ctx, "GET", "/api/v1/agents", { headers: { cookie: session } });
    expect(get.status).toBe(200);
    const json = { cookie: session, "content-type": "application/json" };
    const noToken = await send(ctx, "POST", "/api/v1/agents/from-taxonomy", { headers: json, body: JSON.stringify(agent) });
    expect(noToken.status).toBe(403);
    expect(await errorOf(noToken)).toEqual({ code: "forbidden", message: "a change made with a dashboard session needs its CSRF token in the x-csrf-token header" });
    const wrong = await send(ctx, "DELETE", "/api/v1/tasks/agent-coverage-x", { headers: { ...json, "x-csrf-token": "y".repeat(43) } });
    expect(wrong.status).toBe(403);
    const crossSite = await send(ctx, "DELETE", "/api/v1/tasks/agent-coverage-x", { headers: { ...json, "x-csrf-token": csrf, "sec-fetch-site": "cross-site" } });
    expect(crossSite.status).toBe(403);
    const otherOrigin = await send(ctx, "DELETE", "/api/v1/tasks/agent-coverage-x", { headers: { ...json, "x-csrf-token": csrf, origin: "https://evil.example" } });
    expect(otherOrigin.status).toBe(403);
    // With the token, from our origin: the API answers as it would to a key (400 here: no such task id shape).
    const ours = await send(ctx, "DELETE", "/api/v1/tasks/agent-coverage-x", { headers: { ...json, "x-csrf-token": csrf, "sec-fetch-site": "same-origin", origin: ORIGIN } });
    expect(ours.status).toBe(400);
  });

  test("a cookie that is no session is 401 on the API and the sign-in page for pages", async () => {
    for (const cookie of ["agentq_session=", "agentq_session=short", `agentq_session=${"a".repeat(43)}`]) {
      const api = await send(ctx, "GET", "/api/v1/agents", { headers: { cookie } });
      expect(api.status).toBe(401);
      expect((await errorOf(api)).code).toBe("unauthorized");
      expect((await send(ctx, "GET", "/dashboard", { headers: { cookie } })).status).toBe(303);
    }
  });

  test("signing out needs the page's token, ends the session in Redis and clears the cookie", async () => {
    const { session, csrf } = await signIn(ctx);
    const forged = await send(ctx, "POST", "/dashboard/logout", { headers: { ...FORM, cookie: session }, body: form({}) });
    expect(forged.status).toBe(403);
    expect((await send(ctx, "GET", "/api/v1/agents", { headers: { cookie: session } })).status).toBe(200);
    const res = await send(ctx, "POST", "/dashboard/logout", { headers: { ...FORM, cookie: session }, body: form({ _csrf: csrf }) });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/login");
    expect(setCookie(res, "agentq_session")).toBe("agentq_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    // The old cookie, replayed, opens nothing.
    expect((await send(ctx, "GET", "/api/v1/agents", { headers: { cookie: session } })).status).toBe(401);
    expect((await send(ctx, "GET", "/dashboard", { headers: { cookie: session } })).status).toBe(303);
    // Signing out without a session just goes to the sign-in page.
    expect((await send(ctx, "POST", "/dashboard/logout", { headers: FORM, body: "" })).status).toBe(303);
  });

  test("a session ends when the stored key it was opened with is revoked", async () => {
    const created = await createApiKey(ctx.database.db, "dashboard-user");
    const { session } = await signIn(ctx, created.key);
    expect((await send(ctx, "GET", "/api/v1/agents", { headers: { cookie: session } })).status).toBe(200);
    await revokeApiKey(ctx.database.db, created.keyId, ctx.keyRevocations);
    expect((await send(ctx, "GET", "/api/v1/agents", { headers: { cookie: session } })).status).toBe(401);
    expect((await send(ctx, "GET", "/dashboard", { headers: { cookie: session } })).status).toBe(303);
  });

  test("a session ends at its expiry, and one opened with a static key ends when the key is no longer configured", async () => {
    const store = new SessionStore(ctx.redis, queueKeys(ctx.config.redisPrefix), 60_000);
    const old = await store.create({ kind: "static", keyHash: "00" }, Date.now() - 61_000);
    expect(await store.get(old.token)).toBeNull();
    const live = await store.create({ kind: "static", keyHash: "00" });
    expect(await store.get(live.token)).toEqual(live.session);
    // Its key hash names no configured key: pages and the API refuse it.
    const cookie = `agentq_session=${live.token}`;
    expect((await send(ctx, "GET", "/api/v1/agents", { headers: { cookie } })).status).toBe(401);
  });

  test("an X-API-Key request ignores the cookie and the CSRF rules", async () => {
    const res = await send(ctx, "GET", "/api/v1/agents", { headers: { "x-api-key": TEST_API_KEY, cookie: "agentq_session=garbage" } });
    expect(res.status).toBe(200);
  });
});

describe("AGENTQ_DASHBOARD_READ_ONLY", () => {
  test("pages say so, and every change made with a session is refused (403) even with its CSRF token", async () => {
    const { session, csrf } = await signIn(readOnly);
    const html = await (await send(readOnly, "GET", "/dashboard", { headers: { cookie: session } })).text();
    expect(html).toContain('name="agentq-read-only" content="true"');
    expect((await send(readOnly, "GET", "/api/v1/agents", { headers: { cookie: session } })).status).toBe(200);
    for (const [method, path] of [
      ["DELETE", "/api/v1/tasks/agent-coverage-01a230cd-3722-74d7-8203-7882d615265b"],
      ["POST", "/api/v1/tasks/retry"],
      ["PUT", "/api/v1/agents/00000000-0000-4000-8000-000000000001/schedule"],
    ] as const) {
      const res = await send(readOnly, method, path, {
        headers: { cookie: session, "x-csrf-token": csrf, "content-type": "application/json", "sec-fetch-site": "same-origin" },
        body: "{}",
      });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 });
      expect((await errorOf(res)).message).toContain("read-only");
    }
    // The API itself is unchanged for key holders.
    const byKey = await readOnly.request("DELETE", "tasks/agent-coverage-01a230cd-3722-74d7-8203-7882d615265b");
    expect(byKey.status).toBe(404);
  });

  test("the sign-in page says the dashboard is read-only", async () => {
    expect(await (await send(readOnly, "GET", "/dashboard/login")).text()).toContain("This dashboard is read-only");
  });
});

describe("AGENTQ_DASHBOARD_ENABLED=false", () => {
  test("no dashboard route answers, and no session cookie opens the API", async () => {
    for (const path of ["/dashboard", "/dashboard/login", "/dashboard/tasks", "/dashboard/assets/0/dashboard.js"])
      expect({ path, status: (await send(disabled, "GET", path)).status }).toEqual({ path, status: 404 });
    expect((await send(disabled, "POST", "/dashboard/login", { headers: FORM, body: "api_key=x" })).status).toBe(404);
    const { session } = await signIn(ctx);
    const res = await send(disabled, "GET", "/api/v1/agents", { headers: { cookie: session } });
    expect(res.status).toBe(401);
    expect((await errorOf(res)).message).toBe("missing X-API-Key header");
    // /swagger still works, without the dashboard link.
    const docs = await (await send(disabled, "GET", "/swagger")).text();
    expect(docs).not.toContain('href="/dashboard"');
  });
});

describe("helpers", () => {
  test("same origin: Sec-Fetch-Site first, else Origin against the host the request was sent to", () => {
    const req = (headers: Record<string, string>) => new Request("http://agentq.internal:3000/x", { headers });
    expect(isSameOrigin(req({}))).toBe(true);
    expect(isSameOrigin(req({ "sec-fetch-site": "same-origin" }))).toBe(true);
    expect(isSameOrigin(req({ "sec-fetch-site": "same-site" }))).toBe(false);
    expect(isSameOrigin(req({ "sec-fetch-site": "none" }))).toBe(false);
    expect(isSameOrigin(req({ origin: "http://agentq.internal:3000" }))).toBe(true);
    expect(isSameOrigin(req({ origin: "https://agentq.example.com", "x-forwarded-host": "agentq.example.com" }))).toBe(true);
    expect(isSameOrigin(req({ origin: "https://evil.example" }))).toBe(false);
    expect(isSameOrigin(req({ origin: "null" }))).toBe(false);
  });

  test("cookies are read by exact name", () => {
    const req = new Request("http://x/", { headers: { cookie: "a=1; agentq_session_x=2; agentq_session=3" } });
    expect(readCookie(req, "agentq_session")).toBe("3");
    expect(readCookie(req, "missing")).toBeNull();
    expect(readCookie(new Request("http://x/"), "a")).toBeNull();
  });
});
