/**
 * Benchmark worker thread (bench/engine.ts, cancel inside PostgreSQL): every task blocks in
 * one PostgreSQL statement, `select pg_sleep(30)`, issued through the handler's database
 * with the task's AbortSignal, then computes the agent's (tiny) coverage. What is measured
 * is whether the engine's cancel reaches the statement (the backend stops running it) and
 * how soon the task shows `cancelled`.
 *
 * The statement goes through `queryPrepared` (src/db/prepared.ts), the path production
 * handlers use, with `{signal}`: aborting the signal cancels the statement in PostgreSQL.
 * A queryPrepared without that option (before the engine's signal-aware SQL) ignores it;
 * then the actor cannot stop until the supervisor terminates its thread after
 * AGENTQ_CANCEL_GRACE_MS, and the backend goes on sleeping after that.
 */
import { sql, type SQL } from "drizzle-orm";
import { runActor } from "../../workers/thread.ts";
import { coverageRefresh } from "../../workers/handlers/coverageRefresh.ts";
import { queryPrepared } from "../../src/db/prepared.ts";
import type { Db } from "../../src/db/client.ts";

/** Long enough that no measured cancel can be the statement ending by itself. */
const SLEEP = sql`select pg_sleep(30)`;

/** queryPrepared, typed with its `{signal}` option (a version without it accepts and ignores the argument). */
const query: (db: Db, q: SQL, options: { signal?: AbortSignal }) => Promise<unknown[]> = queryPrepared;

runActor(async (ctx) => {
  await query(ctx.database.db, SLEEP, { signal: ctx.signal });
  ctx.signal.throwIfAborted();
  return coverageRefresh(ctx);
});
