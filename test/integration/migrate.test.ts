import { afterAll, expect, test } from "bun:test";
import postgres from "postgres";
import { randomBytes } from "node:crypto";
import { ensureDatabase, migrateDatabase, prepareDatabase } from "../../src/db/migrate.ts";
import { isTransientDbError } from "../../src/db/errors.ts";
import { TEST_SERVER_URL, urlFor } from "../helpers/db.ts";

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
  expect(tables[0]!.n).toBe(12);
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
