/**
 * The postgres.js pool after its backends are killed (a PostgreSQL restart or failover, as
 * clients see it). postgres.js 3.4.9 as published leaves such a pool broken: statements
 * issued afterwards never settle (a stale write timer stops every flush, queries handed to a
 * connection between its error and close events are never rejected) or fail with the dead
 * backend's error; a backend killed during a new connection's type fetch fails the waiting
 * statement with that stale error and leaves an unhandled rejection, which ends the process.
 * A statement cancelled while its connection opens strands the statements queued behind it.
 * patches/postgres@3.4.9.patch fixes all of that; these tests fail without it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect, createServer, type Server } from "node:net";
import postgres from "postgres";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { sql } from "drizzle-orm";
import { openDatabase, type Database } from "../../src/db/client.ts";
import { queryPrepared } from "../../src/db/prepared.ts";
import { freePort } from "../helpers/metrics.ts";

const APP = `agentq-driver-test-${process.pid}`;
let ctx: TestContext;
let pool: Database;
let admin: postgres.Sql;

beforeAll(async () => {
  ctx = await createTestContext();
  pool = openDatabase(ctx.config.databaseUrl, { max: 3, applicationName: APP });
  admin = postgres(ctx.config.databaseUrl, { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await pool.sql.end({ timeout: 1 });
  await admin.end({ timeout: 1 });
  await ctx.close();
});

/** A statement that neither answers nor fails is the bug: give up on it after `ms`. */
function settled<T>(work: Promise<T>[], ms = 5_000): Promise<PromiseSettledResult<T>[]> {
  let timer: Timer | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`statements still unsettled after ${ms} ms`)), ms);
  });
  return Promise.race([Promise.allSettled(work), hang]).finally(() => clearTimeout(timer));
}

const selectOne = () => pool.sql<{ x: number }[]>`select 1 as x`.then((rows) => rows[0]!.x);

test("after its backends are terminated mid-statement, the pool settles every statement and recovers, round after round", async () => {
  await settled([1, 2, 3].map(() => pool.sql`select pg_sleep(0.01)`)); // three live connections
  for (let round = 0; round < 6; round++) {
    const inFlight = settled([1, 2].map(() => pool.sql`select pg_sleep(5)`), 10_000);
    await eventually(async () => {
      const [row] = await admin<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where application_name = ${APP} and state = 'active' and query like '%pg_sleep(5)%'`;
      return row!.n === 2 ? true : undefined;
    }, 5_000, "two statements in flight");
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${APP}`;

    // Statements issued at once, while the pool is still learning that its connections died
    // (the race that broke the driver), settle; so do the statements that were in flight,
    // at once and not after their 5 s.
    await settled([1, 2, 3, 4].map(selectOne));
    const killed = await inFlight;
    expect(killed.map((r) => r.status)).toEqual(["rejected", "rejected"]);

    // A statement sent to a connection before it noticed that its backend is gone fails
    // (once per connection); within a few batches all succeed.
    let batches = 0;
    let recovered = false;
    while (!recovered && batches++ < 5) recovered = (await settled([1, 2, 3, 4].map(selectOne))).every((r) => r.status === "fulfilled" && r.value === 1);
    expect(recovered).toBe(true);
  }
}, 60_000);

/** What PostgreSQL sends a client whose backend is terminated: ErrorResponse FATAL 57P01. */
function terminatedMessage(): Buffer {
  const fields = Buffer.from("SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0", "latin1");
  const head = Buffer.alloc(5);
  head.write("E", 0, "latin1");
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

/**
 * A relay to the test database whose first connection is "terminated" while it fetches the
 * array types (the first statement of every new connection): it answers that statement
 * with 57P01 and closes, as a server restart or pg_terminate_backend at that moment does.
 */
async function relayTerminatingTypeFetch(target: URL): Promise<{ url: string; terminated: () => boolean; close: () => void }> {
  let terminated = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    client.on("data", (chunk: Buffer) => {
      if (!terminated && chunk.toString("latin1").includes("pg_catalog.pg_type")) {
        terminated = true;
        client.end(terminatedMessage());
        upstream.destroy();
      } else upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  const port = freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
  const url = new URL(target.toString());
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return { url: url.toString(), terminated: () => terminated, close: () => server.close() };
}

test("a backend terminated while a new connection fetches its types: the waiting statement runs on the next connection, nothing is left unhandled", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  const relay = await relayTerminatingTypeFetch(new URL(ctx.config.databaseUrl));
  const fresh = openDatabase(relay.url, { max: 1, applicationName: APP });
  try {
    // postgres.js 3.4.9 as published fails this statement with the dead backend's 57P01 on the
    // live reconnected socket, and leaves the type fetch's rejection unhandled (which ends a
    // process: it brought a supervisor down in CI).
    const [row] = await settled([fresh.sql<{ x: number }[]>`select 1 as x`.then((rows) => rows[0]!.x)]);
    expect(relay.terminated()).toBe(true);
    expect(row).toEqual({ status: "fulfilled", value: 1 });
    await new Promise((resolve) => setImmediate(resolve)); // a rejection left without a handler is reported by now
    expect(unhandled).toEqual([]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
    await fresh.sql.end({ timeout: 1 });
    relay.close();
  }
});

test("a statement cancelled while its connection is still opening does not strand the statements queued behind it", async () => {
  const fresh = openDatabase(ctx.config.databaseUrl, { max: 1, applicationName: APP });
  try {
    // The first statement opens the pool's only connection; it is cancelled before that
    // connection is ready. postgres.js 3.4.9 as published then never serves the queue, and
    // the second statement waits forever.
    const abort = new AbortController();
    const first = queryPrepared(fresh.db, sql`select 1 as x`, { signal: abort.signal });
    const second = queryPrepared<{ x: number }>(fresh.db, sql`select 2 as x`);
    setTimeout(() => abort.abort(new Error("cancelled by the test")), 0);
    const [a, b] = await settled([first.then(() => 1), second.then((rows) => rows[0]!.x)]);
    expect(a!.status).toBe("rejected");
    expect(b).toEqual({ status: "fulfilled", value: 2 });
  } finally {
    await fresh.sql.end({ timeout: 1 });
  }
});
