import { afterAll, expect, test } from "bun:test";
import postgres from "postgres";
import { randomBytes } from "node:crypto";
import { ensureDatabase, migrateDatabase, prepareDatabase } from "../../src/db/migrate.ts";
import { isTransientDbError } from "../../src/db/errors.ts";
import { createServer, connect, type Server } from "node:net";
import { TEST_SERVER_URL, urlFor } from "../helpers/db.ts";
import { freePort } from "../helpers/metrics.ts";

const created: string[] = [];
const freshName = () => {
  const name = `agentq_test_migrate_${randomBytes(4).toString("hex")}`;
  created.push(name);
  return name;
};

afterAll(async () => {
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  for (const name of created) await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

test("ensureDatabase creates a missing database once and then leaves it alone", async () => {
  const url = urlFor(freshName());
  expect(await ensureDatabase(url)).toBe(true);
  expect(await ensureDatabase(url)).toBe(false);
});

test("racing creators of one database all succeed", async () => {
  const url = urlFor(freshName());
  const results = await Promise.all([ensureDatabase(url), ensureDatabase(url), ensureDatabase(url)]);
  expect(results.filter(Boolean).length).toBeLessThanOrEqual(1);
  const sql = postgres(url, { max: 1 });
  expect((await sql`select 1 as one`)[0]!.one).toBe(1);
  await sql.end();
});

test("concurrent migrations serialise on the advisory lock and apply each migration once", async () => {
  const url = urlFor(freshName());
  await ensureDatabase(url);
  await Promise.all([migrateDatabase(url), migrateDatabase(url), prepareDatabase(url)]);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const applied = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`;
  const tables = await sql`select count(*)::int as n from information_schema.tables where table_schema = 'public'`;
  await sql.end();
  const journal = (await Bun.file(new URL("../../drizzle/meta/_journal.json", import.meta.url)).json()) as { entries: unknown[] };
  expect(applied[0]!.n).toBe(journal.entries.length);
  expect(tables[0]!.n).toBe(15);
});

test("a DATABASE_URL without a database name is refused with a clear message", async () => {
  await expect(ensureDatabase("postgres://root@127.0.0.1:5432/")).rejects.toThrow("names no database");
});

test("isTransientDbError recognises lost connections, also when wrapped, and nothing else", () => {
  expect(isTransientDbError({ code: "CONNECTION_CLOSED" })).toBe(true);
  expect(isTransientDbError({ code: "57P01" })).toBe(true);
  expect(isTransientDbError(new Error("wrapped", { cause: { code: "ECONNREFUSED" } }))).toBe(true);
  expect(isTransientDbError({ code: "23505" })).toBe(false);
  expect(isTransientDbError(new Error("plain"))).toBe(false);
  expect(isTransientDbError(undefined)).toBe(false);
});

/** A TCP relay to the test PostgreSQL server on `port`: "PostgreSQL" there answers once it is started. */
function startRelay(port: number): Promise<Server> {
  const target = new URL(TEST_SERVER_URL);
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

test("prepareDatabase waits for a PostgreSQL that is not answering yet, then creates and migrates", async () => {
  const port = freePort();
  const name = freshName();
  const url = new URL(urlFor(name));
  url.port = String(port);
  const retries: number[] = [];
  let relay: Promise<Server> | undefined;
  await prepareDatabase(url.toString(), {
    waitMs: 20_000,
    onRetry: (error, retryInMs) => {
      expect(isTransientDbError(error)).toBe(true); // connection refused: nothing listens yet
      retries.push(retryInMs);
      if (retries.length === 2) relay = startRelay(port); // "PostgreSQL" comes up during the second wait
    },
  });
  expect(retries).toHaveLength(2);
  expect(retries[1]!).toBeGreaterThan(retries[0]!); // backing off
  const sql = postgres(urlFor(name), { max: 1, onnotice: () => {} });
  expect((await sql`select count(*)::int as n from drizzle.__drizzle_migrations`)[0]!.n).toBeGreaterThan(0);
  await sql.end();
  (await relay!).close();
});

test("without a wait, or once the wait is over, a refused connection fails with the driver's error", async () => {
  const url = new URL(urlFor(freshName()));
  url.port = String(freePort());
  await expect(prepareDatabase(url.toString())).rejects.toMatchObject({ code: "ECONNREFUSED" });
  let retried = 0;
  await expect(prepareDatabase(url.toString(), { waitMs: 600, onRetry: () => void retried++ })).rejects.toMatchObject({ code: "ECONNREFUSED" });
  expect(retried).toBeGreaterThan(0);
});

test("an error that is not about the connection is not retried", async () => {
  let retried = 0;
  await expect(prepareDatabase("postgres://root@127.0.0.1:5432/", { waitMs: 10_000, onRetry: () => void retried++ })).rejects.toThrow("names no database");
  expect(retried).toBe(0);
});
