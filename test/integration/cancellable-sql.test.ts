/**
 * Statements a task can cancel (queryPrepared with a signal, src/db/prepared.ts). A PostgreSQL
 * cancel request names a backend, not a statement, so a cancel sent just as its statement
 * finishes used to kill whatever that connection ran next: another task's progress,
 * measurement or settle, which then ended `failed` with "canceling statement due to user
 * request" (seen in the 500-cancel race).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { openDatabase } from "../../src/db/client.ts";
import { queryPrepared } from "../../src/db/prepared.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

test("a cancel that arrives as its statement finishes never fails the statements that follow on the same connection", async () => {
  // One connection, so every statement runs on the backend the cancels are sent to.
  const pool = openDatabase(ctx.config.databaseUrl, { max: 1, applicationName: "agentq-cancellable-test" });
  try {
    let cancelled = 0;
    const hit: string[] = [];
    for (let round = 0; round < 200; round++) {
      const abort = new AbortController();
      const mine = queryPrepared(pool.db, sql`select pg_sleep(0.002)`, { signal: abort.signal }).then(
        () => "finished",
        (error) => (abort.signal.aborted ? "cancelled" : `failed: ${error}`),
      );
      // Issued at once: without a connection of its own, the driver pipelines it right behind the cancellable one.
      const next = queryPrepared(pool.db, sql`select pg_sleep(0.002)`).then(
        () => null,
        (error) => String(error),
      );
      // Around the moment the statement ends, so some cancels land on it and some just after it.
      setTimeout(() => abort.abort(new Error("cancelled by the test")), Math.random() * 4);
      const [outcome, error] = await Promise.all([mine, next]);
      expect(outcome).not.toStartWith("failed");
      if (outcome === "cancelled") cancelled++;
      if (error) hit.push(error);
    }
    expect(hit).toEqual([]);
    expect(cancelled).toBeGreaterThan(0);
  } finally {
    await pool.sql.end({ timeout: 1 });
  }
}, 60_000);

test("an abort while every connection is busy rejects at once, without waiting for a connection", async () => {
  const pool = openDatabase(ctx.config.databaseUrl, { max: 1, applicationName: "agentq-cancellable-test" });
  try {
    const busy = pool.sql`select pg_sleep(2)`;
    const blocker = busy.then(() => "done");
    const abort = new AbortController();
    const waiting = queryPrepared(pool.db, sql`select 1 as x`, { signal: abort.signal });
    const started = performance.now();
    abort.abort(new Error("cancelled while waiting"));
    await expect(waiting).rejects.toThrow("cancelled while waiting");
    expect(performance.now() - started).toBeLessThan(1_000); // the connection frees only after 2 s
    expect(await blocker).toBe("done");
    // The connection it would have had still serves the pool.
    expect(await queryPrepared<{ x: number }>(pool.db, sql`select 3 as x`)).toEqual([{ x: 3 }]);
  } finally {
    await pool.sql.end({ timeout: 1 });
  }
}, 20_000);

test("a cancellable statement that fails on its own rejects with its own error, and its connection serves the next one", async () => {
  const pool = openDatabase(ctx.config.databaseUrl, { max: 1, applicationName: "agentq-cancellable-test" });
  try {
    const signal = new AbortController().signal;
    await expect(queryPrepared(pool.db, sql`select 1 / 0 as x`, { signal })).rejects.toMatchObject({ code: "22012" });
    expect(await queryPrepared<{ x: number }>(pool.db, sql`select 4 as x`, { signal })).toEqual([{ x: 4 }]);
  } finally {
    await pool.sql.end({ timeout: 1 });
  }
});
