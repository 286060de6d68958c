/**
 * The app served the way `bun run api` serves it (app.listen with listenOptions), spoken
 * to over real sockets: which limits answer in the error shape, which ones Bun still
 * answers itself (documented in the README, "Limits"), and the security headers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { createTestContext, TEST_API_KEY, type TestContext } from "../helpers/app.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { listenOptions } from "../../src/api/app.ts";

const MAX_BODY = 64 * 1024;
let ctx: TestContext;
let port: number;
let agentId: string;

beforeAll(async () => {
  ctx = await createTestContext({ maxBodyBytes: MAX_BODY });
  const root = uuid();
  await postTaxonomy(ctx, "h-1", [{ node_id: root, label: "root" }]);
  agentId = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
  ctx.app.listen(listenOptions({ host: "127.0.0.1", port: 0 }));
  port = ctx.app.server!.port!;
});
afterAll(async () => {
  await ctx.app.stop(true);
  await ctx.close();
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** True when the server closed the connection after answering. */
  closed: boolean;
}

/**
 * Writes `head` then `body` (in pieces, as a slow client would) to a fresh connection and
 * reads the one response. Writes stop at the first error: the server may close early.
 */
function exchange(head: string, body: Iterable<Uint8Array | string> = []): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const received: Buffer[] = [];
    const socket = net.connect(port, "127.0.0.1");
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(received).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      if (split < 0) return reject(new Error(`no response: ${JSON.stringify(text.slice(0, 200))}`));
      const [statusLine, ...headerLines] = text.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      let rest = text.slice(split + 4);
      if (headers["content-length"] !== undefined) rest = rest.slice(0, Number(headers["content-length"]));
      resolve({ status: Number(statusLine!.split(" ")[1]), headers, body: rest, closed: socket.destroyed || socket.readableEnded });
    };
    socket.on("data", (chunk) => {
      received.push(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
      const text = Buffer.concat(received).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split));
      // A response with a length is complete when that many bytes arrived; wait briefly for a close.
      if (split >= 0 && length && text.length - split - 4 >= Number(length[1])) setTimeout(() => { finish(); socket.destroy(); }, 50);
    });
    socket.on("close", finish);
    socket.on("error", () => undefined);
    socket.on("connect", async () => {
      socket.write(head);
      for (const piece of body) {
        if (socket.destroyed || done) break;
        if (!socket.write(piece)) await new Promise((r) => socket.once("drain", r).once("close", r));
      }
    });
  });
}

const expectShaped = (res: RawResponse, status: number, code: string) => {
  expect({ status: res.status, type: res.headers["content-type"] }).toEqual({ status, type: "application/json" });
  const parsed = JSON.parse(res.body) as { error: { code: string; message: string } };
  expect(parsed.error.code).toBe(code);
  expect(parsed.error.message.length).toBeGreaterThan(0);
  expect(res.headers["x-request-id"]).toBeDefined();
};

const post = (path: string, headers: Record<string, string>) =>
  `POST /api/v1/${path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: ${TEST_API_KEY}\r\nContent-Type: application/json\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

describe("every too-large body is a 413 in the error shape, from the app, not Bun", () => {
  test("a declared Content-Length over the limit, up to 1 GiB: refused before the body is read, then the connection is closed", async () => {
    for (const length of [MAX_BODY + 1, 2 * MAX_BODY + 1, 3 * 2 ** 20, 2 ** 30]) {
      // Only the first 16 KiB are ever sent: the answer must not wait for the rest.
      const res = await exchange(post("documents", { "Content-Length": String(length) }), [new Uint8Array(16 * 1024)]);
      expectShaped(res, 413, "payload_too_large");
      expect({ length, connection: res.headers.connection, closed: res.closed }).toEqual({ length, connection: "close", closed: true });
    }
  });

  test("a streamed (chunked) body is read up to the limit and refused there", async () => {
    const piece = "x".repeat(1000);
    const chunks = function* () {
      // 1 MB in 1 KB chunks; the server stops reading after 64 KiB.
      for (let i = 0; i < 1024; i++) yield `${piece.length.toString(16)}\r\n${piece}\r\n`;
      yield "0\r\n\r\n";
    };
    const res = await exchange(post("documents", { "Transfer-Encoding": "chunked" }), chunks());
    expectShaped(res, 413, "payload_too_large");
    expect(res.headers.connection).toBe("close");
  });

  test("a streamed body under the limit is accepted", async () => {
    const body = JSON.stringify({ title: "streamed", chunks: [{ text: "t" }], mappings: [] });
    const res = await exchange(post("documents", { "Transfer-Encoding": "chunked" }), [`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`]);
    expect(res.status).toBe(201);
  });
});

describe("what Bun still answers itself, before the app (README, Limits)", () => {
  const get = (extra: string) => `GET /healthz HTTP/1.1\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n`;

  test("headers up to 16 KiB reach the app; more, or more than ~200 fields, are Bun's 431 with an empty body", async () => {
    const fits = await exchange(get(`X-Big: ${"h".repeat(15_000)}\r\n`));
    expect(fits.status).toBe(200);
    expect(fits.headers["x-request-id"]).toBeDefined();
    for (const extra of [`X-Big: ${"h".repeat(17_000)}\r\n`, `X-Big: ${"h".repeat(70_000)}\r\n`, Array.from({ length: 250 }, (_, i) => `X-${i}: v\r\n`).join("")]) {
      const res = await exchange(get(extra));
      expect({ status: res.status, body: res.body, closed: res.closed }).toEqual({ status: 431, body: "", closed: true });
    }
  });

  test("a request Bun cannot parse is its 400 with an empty body", async () => {
    for (const raw of [get("Not A Header\r\n"), "GARBAGE\r\n\r\n", `POST /api/v1/documents HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`]) {
      const res = await exchange(raw);
      expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: "" });
    }
  });
});

describe("security headers", () => {
  const url = (path: string) => `http://127.0.0.1:${port}${path}`;
  const auth = { "x-api-key": TEST_API_KEY };

  test("nosniff on every response the app makes; no-store on every /api/v1 response", async () => {
    const cases: [string, Promise<Response>, boolean][] = [
      ["healthz", fetch(url("/healthz")), false],
      ["swagger ui", fetch(url("/swagger")), false],
      ["openapi json", fetch(url("/swagger/json")), false],
      ["metrics", fetch(url("/metrics")), false],
      ["unknown path", fetch(url("/nope")), false],
      ["agent", fetch(url(`/api/v1/agents/${agentId}`), { headers: auth }), true],
      ["list", fetch(url("/api/v1/agents"), { headers: auth }), true],
      ["401", fetch(url("/api/v1/agents")), true],
      ["400", fetch(url("/api/v1/agents/not-a-uuid"), { headers: auth }), true],
      ["404", fetch(url(`/api/v1/agents/${uuid()}`), { headers: auth }), true],
      ["204", fetch(url(`/api/v1/documents/${uuid()}`), { method: "DELETE", headers: auth }), true],
      ["413", fetch(url("/api/v1/documents"), { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "x".repeat(MAX_BODY + 1) }), true],
    ];
    for (const [what, pending, api] of cases) {
      const res = await pending;
      await res.arrayBuffer();
      expect({ what, nosniff: res.headers.get("x-content-type-options"), noStore: res.headers.get("cache-control") }).toEqual({
        what,
        nosniff: "nosniff",
        noStore: api ? "no-store" : null,
      });
    }
  });
});

test("the report's 20,000-deep request to the listening server answers in under 50 ms, and /healthz is not held up", async () => {
  const body = `{"title":"t","chunks":${"[".repeat(20_000)}${"]".repeat(20_000)},"mappings":[]}`;
  const deep = await fetch(`http://127.0.0.1:${port}/api/v1/documents`, {
    method: "POST",
    headers: { "x-api-key": TEST_API_KEY, "content-type": "application/json" },
    body,
  });
  expect(deep.status).toBe(400);
  expect(((await deep.json()) as { error: { code: string } }).error.code).toBe("validation_error");
  const started = performance.now();
  const [res, health] = await Promise.all([
    fetch(`http://127.0.0.1:${port}/api/v1/documents`, {
      method: "POST",
      headers: { "x-api-key": TEST_API_KEY, "content-type": "application/json" },
      body,
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error: { message: string } }, ms: performance.now() - started })),
    fetch(`http://127.0.0.1:${port}/healthz`).then((r) => ({ status: r.status, ms: performance.now() - started })),
  ]);
  expect(res.body.error.message).toBe("invalid body: nested deeper than 64 levels of arrays and objects");
  expect({ status: res.status, under50: res.ms < 50, health: health.status, healthUnder50: health.ms < 50 }).toEqual({ status: 400, under50: true, health: 200, healthUnder50: true });
});
