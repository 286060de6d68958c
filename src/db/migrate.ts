/**
 * Creates the database if it is missing and applies drizzle/ migrations under a
 * PostgreSQL advisory lock, so several processes starting at once migrate once.
 */
import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { fileURLToPath } from "node:url";
import pRetry from "p-retry";
import { isTransientDbError } from "./errors.ts";

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

/** Arbitrary constant: the advisory lock key every agentq process uses for migrations. */
const MIGRATION_LOCK_KEY = 7_264_110_231;

function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ""));
  if (!name) throw new Error(`DATABASE_URL names no database: ${url}`);
  return name;
}

function maintenanceUrl(url: string): string {
  const u = new URL(url);
  u.pathname = "/postgres";
  return u.toString();
}

/** CREATE DATABASE if it does not exist; racing creators are fine (one creates, the rest see it). */
export async function ensureDatabase(url: string): Promise<boolean> {
  const name = databaseName(url);
  const admin = postgres(maintenanceUrl(url), { max: 1, onnotice: () => {} });
  try {
    const found = await admin`select 1 from pg_database where datname = ${name}`;
    if (found.length > 0) return false;
    try {
      await admin.unsafe(`create database "${name.replaceAll('"', '""')}"`);
      return true;
    } catch (error) {
      // Lost the race: duplicate_database, or the catalog's unique index when both ran at once.
      const code = (error as { code?: string }).code;
      if (code === "42P04" || code === "23505") return false;
      throw error;
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Applies pending migrations while holding the migration advisory lock. */
export async function migrateDatabase(url: string): Promise<void> {
  // One connection: the session-level advisory lock and the migration share it.
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migrate(drizzle(sql), { migrationsFolder: MIGRATIONS_FOLDER });
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export interface PrepareOptions {
  /**
   * How long to keep trying while PostgreSQL refuses or drops connections (it may be starting,
   * restarting or failing over as we start). 0: one try. Other errors fail at once.
   */
  waitMs?: number;
  /** Told of each failed try that will be retried, and when the next one starts. */
  onRetry?: (error: unknown, retryInMs: number) => void;
}

/** Creates the database if needed and migrates it, waiting up to `waitMs` for PostgreSQL to answer. */
export async function prepareDatabase(url: string, options: PrepareOptions = {}): Promise<void> {
  await pRetry(
    async () => {
      await ensureDatabase(url);
      await migrateDatabase(url);
    },
    {
      retries: options.waitMs ? Number.POSITIVE_INFINITY : 0,
      maxRetryTime: options.waitMs ?? 0,
      minTimeout: 250,
      maxTimeout: 5_000,
      factor: 2,
      shouldRetry: ({ error }) => isTransientDbError(error),
      onFailedAttempt: ({ error, retryDelay, retriesLeft }) => {
        if (retriesLeft > 0 && retryDelay > 0 && isTransientDbError(error)) options.onRetry?.(error, retryDelay);
      },
    },
  );
}
