/**
 * /swagger in a real Chromium with no internet: Swagger UI's files come from the pinned
 * swagger-ui-dist package on our origin, under a Content-Security-Policy that allows only
 * that origin, and the page lists every operation of the OpenAPI document.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser } from "playwright-core";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { useTimerImmediates, launchBrowser, offlineContext, screenshot, serve, type Served } from "./support.ts";
import { CONTENT_SECURITY_POLICY } from "../../src/dashboard/html.ts";
import swaggerPkg from "swagger-ui-dist/package.json" with { type: "json" };

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

describe("/swagger offline", () => {
  test("lists every operation, loading nothing from outside our origin, with no CSP violation", async () => {
    const spec = (await (await fetch(`${served.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const operations = Object.values(spec.paths).reduce((n, methods) => n + Object.keys(methods).length, 0);
    expect(operations).toBeGreaterThan(10);

    const offline = await offlineContext(browser, served.url);
    try {
      const page = await offline.newPage();
      const scripts: string[] = [];
      page.on("request", (r) => {
        if (r.resourceType() === "script" || r.resourceType() === "stylesheet") scripts.push(r.url());
      });
      const response = await page.goto("/swagger");
      expect(response!.status()).toBe(200);
      expect(response!.headers()["content-security-policy"]).toBe(CONTENT_SECURITY_POLICY);

      await page.locator(".opblock").first().waitFor({ timeout: 15_000 });
      expect(await page.locator(".opblock").count()).toBe(operations);
      await expect(page.locator(".opblock-summary-path").filter({ hasText: "/api/v1/tasks/{task_id}" }).first().isVisible()).resolves.toBe(true);
      await screenshot(page, "swagger");

      expect(offline.external).toEqual([]);
      expect(offline.errors).toEqual([]);
      expect(scripts.length).toBeGreaterThanOrEqual(3);
      for (const url of scripts) expect(url.startsWith(`${served.url}/swagger/assets/`)).toBe(true);
    } finally {
      await offline.close();
    }
  }, 30_000);

  test("the page names the pinned swagger-ui-dist version and serves its files with a digest in the URL", async () => {
    const html = await (await fetch(`${served.url}/swagger`)).text();
    expect(html).toContain(`Swagger UI ${swaggerPkg.version}`);
    expect(html).not.toContain("unpkg");
    const bundle = /src="(\/swagger\/assets\/[0-9a-f]{16}\/swagger-ui-bundle\.js)"/.exec(html)![1]!;
    const res = await fetch(`${served.url}${bundle}`, { headers: { "accept-encoding": "gzip" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const body = await res.text();
    expect(body).toContain("SwaggerUIBundle");

    const etag = res.headers.get("etag")!;
    expect((await fetch(`${served.url}${bundle}`, { headers: { "if-none-match": etag } })).status).toBe(304);
    // An old digest (a page from before an upgrade) is not served stale bytes.
    expect((await fetch(`${served.url}${bundle.replace(/[0-9a-f]{16}/, "0".repeat(16))}`)).status).toBe(404);
  });
});
