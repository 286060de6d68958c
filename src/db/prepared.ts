/**
 * Runs a Drizzle `sql` query as a named prepared statement on postgres.js.
 * Drizzle's `db.execute` never prepares raw SQL, so PostgreSQL parses and
 * plans it on every call; on the task hot path (claim, progress, coverage
 * steps, completion) that was about half of the database's CPU per task.
 */
import type { SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import type postgres from "postgres";
import type { DbOrTx } from "./client.ts";

const dialect = new PgDialect();

type WithClient = { $client?: postgres.Sql };

export async function queryPrepared<T extends Record<string, unknown>>(db: DbOrTx, query: SQL): Promise<T[]> {
  const client = (db as WithClient).$client;
  // Inside a Drizzle transaction there is no top-level client: run it unprepared there.
  if (!client) return [...(await db.execute(query))] as T[];
  const { sql: text, params } = dialect.sqlToQuery(query);
  const rows = await client.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
  return rows as unknown as T[];
}
