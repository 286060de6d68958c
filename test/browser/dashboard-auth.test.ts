/**
 * Signing in to the dashboard in a real Chromium with no internet: the sign-in page for an
 * unauthenticated visit, a bad key refused with a message, a good key opening a session cookie
 * (HttpOnly, SameSite=Strict) that lands on the page asked for, and signing out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser } from "playwright-core";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { useTimerImmediates, launchBrowser, offlineContext, pageFaults, screenshot, serve, signInThroughForm, type Served } from "./support.ts";

let ctx: TestContext;
let served: Served;
let browser: Browser;

let immediates: { restore(): void } | undefined;

beforeAll(async () => {
  immediates = useTimerImmediates();
  ctx = await createTestContext();
  served = serve(ctx);
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await served?.stop();
  await ctx?.close();
  immediates?.restore();
});

describe("dashboard sign-in in a browser", () => {
  test("an unauthenticated visit gets the sign-in page; a bad key is refused with a message", async () => {
    const offline = await offlineContext(browser, served.url);
    try {
      const page = await offline.newPage();
      await page.goto("/dashboard/tasks?status=failed");
      expect(new URL(page.url()).pathname).toBe("/dashboard/login");
      await expect(page.locator("h1").textContent()).resolves.toBe("agentq");
      await screenshot(page, "dashboard-login");

      await page.locator("#api_key").fill("this-is-not-a-key-at-all");
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect(page.getByRole("alert").textContent()).resolves.toBe("That API key was refused: it is unknown or has been revoked.");
      expect(new URL(page.url()).pathname).toBe("/dashboard/login");
      expect(await offline.context.cookies()).not.toContainEqual(expect.objectContaining({ name: "agentq_session" }));
      // The form can be used again at once (a fresh form token came with the answer).
      await page.locator("#api_key").fill(TEST_API_KEY);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL((url) => url.pathname === "/dashboard/tasks");
      expect(new URL(page.url()).search).toBe("?status=failed");
      expect(offline.external).toEqual([]);
      expect(pageFaults(offline.errors)).toEqual([]);
    } finally {
      await offline.close();
    }
  }, 30_000);

  test("a good key signs in with an HttpOnly, SameSite=Strict session cookie; signing out ends the session", async () => {
    const offline = await offlineContext(browser, served.url);
    try {
      const page = await offline.newPage();
      await signInThroughForm(page, TEST_API_KEY, "/dashboard/agents");
      await expect(page.locator("h1").textContent()).resolves.toBe("Agents");
      const [cookie] = (await offline.context.cookies()).filter((c) => c.name === "agentq_session");
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/", secure: false });
      expect(cookie!.expires * 1000 - Date.now()).toBeGreaterThan(7.9 * 3600 * 1000);
      // Page scripts cannot read it.
      expect(await page.evaluate("document.cookie")).not.toContain("agentq_session");

      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL((url) => url.pathname === "/dashboard/login");
      // The old cookie is dead server side: put it back and the dashboard still wants a sign-in.
      await offline.context.addCookies([cookie!]);
      await page.goto("/dashboard/agents");
      expect(new URL(page.url()).pathname).toBe("/dashboard/login");
      const api = await page.evaluate("fetch('/api/v1/agents').then((r) => r.status)");
      expect(api).toBe(401);
      expect(offline.external).toEqual([]);
      expect(pageFaults(offline.errors)).toEqual([]);
    } finally {
      await offline.close();
    }
  }, 30_000);
});
