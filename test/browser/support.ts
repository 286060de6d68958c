/**
 * Browser tests: Debian's `chromium` (never a downloaded browser) driven by playwright-core,
 * against the real app served on loopback from the test process (so the server code it runs
 * counts towards coverage), with real PostgreSQL and Redis, and an engine when a test needs one.
 *
 * Every page is loaded offline: each context aborts any request that leaves the app's origin
 * and records it, so a test can assert that nothing tried to (no CDN, no fonts, no telemetry).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { listenOptions } from "../../src/api/app.ts";

/**
 * Runs setImmediate callbacks as 0 ms timers while a browser test file runs (restored after).
 *
 * Why: in a `bun test` process that drives Chromium through playwright-core (Bun 1.4.5), the
 * setImmediate queue sometimes stops being run for tens of seconds while timers still fire,
 * until some socket or pipe event arrives. ioredis (auto-pipelining) and postgres.js flush
 * their writes from setImmediate, so a request to the app served by the test process then
 * hangs until Chromium or Bun's test timeout closes a connection: seen in about one run in
 * four of dashboard-tasks.test.ts, each time with a callback scheduled by ioredis or
 * playwright-core waiting over a second while a 250 ms interval kept running. Not seen with
 * the same server and browser in a plain `bun` process, nor with this shim (16 runs). The
 * app's code is unchanged; only the test process's scheduling of these callbacks is.
 */
export function useTimerImmediates(): { restore(): void } {
  const realSet = globalThis.setImmediate;
  const realClear = globalThis.clearImmediate;
  const ours = new WeakSet<object>();
  const g = globalThis as unknown as Record<string, unknown>;
  g.setImmediate = (fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    const timer = setTimeout(fn, 0, ...args);
    ours.add(timer as object);
    return timer;
  };
  g.clearImmediate = (handle: unknown) => {
    if (handle && typeof handle === "object" && ours.has(handle)) clearTimeout(handle as ReturnType<typeof setTimeout>);
    else realClear(handle as Parameters<typeof clearImmediate>[0]);
  };
  return {
    restore() {
      g.setImmediate = realSet;
      g.clearImmediate = realClear;
    },
  };
}

/** The Debian package's binary; AGENTQ_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.AGENTQ_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Flags for a sandbox with no network: without the background-networking ones Chromium keeps
 * trying Google's hosts. Playwright adds --headless, --no-sandbox (not root-safe otherwise)
 * and a fresh --user-data-dir of its own.
 */
const CHROMIUM_ARGS = [
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does it)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, chromiumSandbox: false, args: CHROMIUM_ARGS });
}

export interface Served {
  url: string;
  stop(): Promise<void>;
}

/** Serves the test context's app on a random loopback port, as `bun run api` would. */
export function serve(ctx: TestContext): Served {
  ctx.app.listen({ ...listenOptions({ host: "127.0.0.1", port: 0 }) });
  const port = ctx.app.server!.port;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      await ctx.app.stop(true);
    },
  };
}

export interface OfflineContext {
  context: BrowserContext;
  /** Requests that tried to leave the origin (aborted). */
  external: string[];
  /** Console errors and page errors, CSP violations among them. */
  errors: string[];
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** A fresh context (no cookies) at 1280x800 whose pages can reach `origin` only. */
export async function offlineContext(browser: Browser, origin: string): Promise<OfflineContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: origin });
  const external: string[] = [];
  const errors: string[] = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`) || url === origin) return route.continue();
    external.push(url);
    return route.abort("internetdisconnected");
  });
  return {
    context,
    external,
    errors,
    async newPage() {
      const page = await context.newPage();
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
      return page;
    },
    close: () => context.close(),
  };
}

/**
 * Saves a screenshot when SCREENSHOT_DIR is set (`SCREENSHOT_DIR=docs/images bun test
 * test/browser` refreshes the README's pictures); otherwise does nothing.
 */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<void> {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: options.fullPage ?? false, animations: "disabled" });
}

/** Errors that must never happen on our pages: script errors and Content-Security-Policy refusals. */
export const pageFaults = (errors: readonly string[]) => errors.filter((e) => e.startsWith("pageerror") || /Content Security Policy|Refused to/.test(e));

/** Signs in through the sign-in form, as a person would, and waits for the page it lands on. */
export async function signInThroughForm(page: Page, key: string, path = "/dashboard"): Promise<void> {
  await page.goto(path);
  await page.locator("#api_key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => url.pathname === path.split("?")[0]);
  await page.locator(".topbar").waitFor();
}

/** The app served, an offline Chromium context, and a page signed in through the form. */
export interface SignedInDashboard {
  offline: OfflineContext;
  page: Page;
  /** Closes the context and the browser, and stops serving the app. */
  close(): Promise<void>;
}

export async function openSignedInDashboard(ctx: TestContext, path = "/dashboard"): Promise<SignedInDashboard> {
  const served = serve(ctx);
  const browser = await launchBrowser();
  const offline = await offlineContext(browser, served.url);
  const page = await offline.newPage();
  await signInThroughForm(page, TEST_API_KEY, path);
  return {
    offline,
    page,
    async close() {
      await offline.close();
      await browser.close();
      await served.stop();
    },
  };
}
