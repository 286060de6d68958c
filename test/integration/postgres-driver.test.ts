/**
 * The postgres.js pool after its backends are killed (a PostgreSQL restart or failover, as
 * clients see it). postgres.js 3.4.9 as published leaves such a pool broken: statements
 * issued afterwards never settle (a stale write timer stops every flush, queries handed to a
 * connection between its error and close events are never rejected) or fail with the dead
 * backend's error. patches/postgres@3.4.9.patch fixes that; this test fails without it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { eventually } from "../helpers/engine.ts";
import { openDatabase, type Database } from "../../src/db/client.ts";

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
