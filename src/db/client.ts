/**
 * Database handles. One postgres.js pool per process (or worker thread), wrapped by Drizzle.
 */
import postgres from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import * as schema from "./schema.ts";

export type Db = PostgresJsDatabase<typeof schema>;
/** A transaction handle has the same query surface as the database. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
export type DbOrTx = Db | Tx;

export interface Database {
  db: Db;
  sql: postgres.Sql;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  max?: number;
  /** Name shown in pg_stat_activity, so operators can tell processes apart. */
  applicationName?: string;
  /**
   * Commit without waiting for the WAL flush (`synchronous_commit = off` on these connections).
   * Only for writes whose loss in a PostgreSQL crash is harmless (an actor's claims: see
   * workers/actorDeps.ts); everything acknowledged to anyone waits for the flush.
   */
  asyncCommit?: boolean;
}

/** Connections a pool opens at most unless told otherwise. */
export const DEFAULT_POOL_MAX = 10;

export function openDatabase(url: string, options: DatabaseOptions = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? DEFAULT_POOL_MAX,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName ?? "agentq",
      ...(options.asyncCommit ? { synchronous_commit: "off" } : {}),
    },
    // uuid[] and jsonb round-trip as JS values; timestamps as Date.
  });
  const db = drizzle(sql, { schema });
  return {
    db,
    sql,
    close: () => sql.end({ timeout: 5 }),
  };
}
