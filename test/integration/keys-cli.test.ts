import { afterAll, beforeAll, expect, test } from "bun:test";
import { fileURLToPath } from "node:url";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { nextRevocation } from "../helpers/revocations.ts";
import { createApiKey } from "../../src/auth/apiKeys.ts";

const PROJECT_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const KEY_PATTERN = /aq_[0-9a-f]{32}_[A-Za-z0-9_-]{43}/;
/** Every key printed (global flag only here: `.match` with it lists all occurrences). */
const allKeys = (text: string) => text.match(new RegExp(KEY_PATTERN.source, "g")) ?? [];

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

async function keysCli(...args: string[]) {
  const proc = Bun.spawn([process.execPath, "run", "keys", ...args], {
    cwd: PROJECT_ROOT,
    // The CLI publishes revokes under the app's Redis prefix.
    env: { ...process.env, DATABASE_URL: ctx.testDb.url, REDIS_URL: ctx.config.redisUrl, AGENTQ_REDIS_PREFIX: ctx.config.redisPrefix },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

const withKey = (key: string) => ({ anonymous: true, headers: { "x-api-key": key } });

test("`keys create` prints a new key once; it authenticates; `keys revoke <id>` makes it fail", async () => {
  const created = await keysCli("create", "cli test key");
  expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: expect.not.stringMatching(KEY_PATTERN) });
  const keys = allKeys(created.stdout);
  expect(keys).toHaveLength(1);
  const key = keys[0]!;
  const keyId = created.stdout.match(/created key ([0-9a-f-]{36})/)?.[1];
  expect(keyId).toBeDefined();
  // The key id is the uuid written in the key's first part.
  expect(key.slice(3, 35)).toBe(keyId!.replaceAll("-", ""));

  const stored = await ctx.database.sql<{ name: string; row: string }[]>`
    select name, to_jsonb(k)::text as row from api_keys k where key_id = ${keyId!}`;
  expect(stored).toHaveLength(1);
  expect(stored[0]!.name).toBe("cli test key");
  expect(stored[0]!.row).not.toContain(key.slice(36));

  const ok = await ctx.request("GET", "agents", withKey(key));
  expect(ok.status).toBe(200);

  // `keys list` names the key but never prints it.
  const listed = await keysCli("list");
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain(keyId!);
  expect(listed.stdout).toContain("cli test key");
  expect(listed.stdout).not.toMatch(KEY_PATTERN);

  // The key is cached now; the CLI's revoke reaches the app through Redis pub/sub.
  const heard = nextRevocation(ctx.keyRevocations, keyId!);
  const revoked = await keysCli("revoke", keyId!);
  expect({ code: revoked.code, stderr: revoked.stderr }).toEqual({ code: 0, stderr: expect.not.stringMatching(/Error|warning/) });
  expect(revoked.stdout).toContain("revoked 1 key");
  await heard;

  const refused = await ctx.request("GET", "agents", withKey(key));
  expect(refused.status).toBe(401);
  expect(refused.body.error.code).toBe("unauthorized");
  expect((await keysCli("list")).stdout).toContain("REVOKED");

  // Revoking it again fails: there is no active key with that id.
  const again = await keysCli("revoke", keyId!);
  expect(again.code).not.toBe(0);
  expect(again.stderr).toContain("no active key");
});

test("every `keys create` prints a different key", async () => {
  const a = allKeys((await keysCli("create", "first")).stdout)[0];
  const b = allKeys((await keysCli("create", "second")).stdout)[0];
  expect(a).toBeDefined();
  expect(b).toBeDefined();
  expect(a).not.toBe(b);
  expect((await ctx.request("GET", "agents", withKey(a!))).status).toBe(200);
  expect((await ctx.request("GET", "agents", withKey(b!))).status).toBe(200);
});

test("`keys create` without a name fails with the usage and writes nothing", async () => {
  const [before] = await ctx.database.sql<{ n: number }[]>`select count(*)::int as n from api_keys`;
  const res = await keysCli("create");
  expect(res.code).not.toBe(0);
  expect(res.stderr).toContain("usage");
  expect(res.stdout).not.toMatch(KEY_PATTERN);
  const [after] = await ctx.database.sql<{ n: number }[]>`select count(*)::int as n from api_keys`;
  expect(after!.n).toBe(before!.n);
});

test("`keys revoke` with Redis unreachable still revokes, warns that API processes learn it only when their cache expires, exits 0", async () => {
  const created = await createApiKey(ctx.database.db, "revoked while redis is down");
  const proc = Bun.spawn([process.execPath, "run", "keys", "revoke", created.keyId], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: ctx.testDb.url, REDIS_URL: "redis://127.0.0.1:1/0", AGENTQ_REDIS_PREFIX: ctx.config.redisPrefix },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  expect(stdout).toContain("revoked 1 key");
  expect(stderr).toContain("warning");
  expect(stderr).toContain("AGENTQ_API_KEY_CACHE_TTL_MS");
  const [row] = await ctx.database.sql<{ revoked: boolean }[]>`select revoked_at is not null as revoked from api_keys where key_id = ${created.keyId}`;
  expect(row!.revoked).toBe(true);
});
