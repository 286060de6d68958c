/**
 * Creates the database if it is missing and applies drizzle/ migrations under a
 * PostgreSQL advisory lock, so several processes starting at once migrate once.
 */
import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { fileURLToPath } from "node:url";

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

/** CREATE DATABASE if it does not exist (racing creators are fine: duplicate_database is ignored). */
export async function ensureDatabase(url: string, template?: string): Promise<boolean> {
  const name = databaseName(url);
  const admin = postgres(maintenanceUrl(url), { max: 1, onnotice: () => {} });
  try {
    const found = await admin`select 1 from pg_database where datname = ${name}`;
    if (found.length > 0) return false;
    try {
      if (template) {
        await admin.unsafe(`create database "${name.replaceAll('"', '""')}" template "${template.replaceAll('"', '""')}"`);
      } else {
        await admin.unsafe(`create database "${name.replaceAll('"', '""')}"`);
      }
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === "42P04") return false; // duplicate_database
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

export async function prepareDatabase(url: string): Promise<void> {
  await ensureDatabase(url);
  await migrateDatabase(url);
}
