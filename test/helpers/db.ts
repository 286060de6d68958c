/**
 * Test databases: one migrated template per run, cloned into a fresh database
 * per test file (CREATE DATABASE ... TEMPLATE is a file copy: fast, and every
 * file starts from the same migrated, empty state).
 */
import postgres from "postgres";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ensureDatabase, migrateDatabase, MIGRATIONS_FOLDER } from "../../src/db/migrate.ts";

/** Server the tests use; never a user's database (names all start with agentq_test_). */
export const TEST_SERVER_URL = process.env.AGENTQ_TEST_DATABASE_URL ?? "postgres://root@127.0.0.1:5432/postgres";
/**
 * The template's name carries a digest of the migrations, so a changed or
 * regenerated migration gets a fresh template instead of a half-migrated one.
 */
function migrationsDigest(): string {
  const hash = createHash("sha256");
  const files = [...readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith(".sql")).sort(), "meta/_journal.json"];
  for (const f of files) hash.update(f).update(readFileSync(join(MIGRATIONS_FOLDER, f)));
  return hash.digest("hex").slice(0, 12);
}
const TEMPLATE = `agentq_test_template_${migrationsDigest()}`;

export const urlFor = (database: string) => {
  const u = new URL(TEST_SERVER_URL);
  u.pathname = `/${database}`;
  return u.toString();
};

let templateReady: Promise<void> | undefined;

/** Creates and migrates the template once per process (migrations are idempotent and locked). */
export function prepareTemplate(): Promise<void> {
  templateReady ??= (async () => {
    await ensureDatabase(urlFor(TEMPLATE));
    await migrateDatabase(urlFor(TEMPLATE));
  })();
  return templateReady;
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  await prepareTemplate();
  const name = `agentq_test_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    // Another process may be cloning the template at this instant; PostgreSQL refuses a busy template.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.unsafe(`create database "${name}" template "${TEMPLATE}"`);
        break;
      } catch (error) {
        if ((error as { code?: string }).code !== "55006" || attempt > 50) throw error;
        await Bun.sleep(100);
      }
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
  return {
    name,
    url: urlFor(name),
    async drop() {
      const a = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await a.end({ timeout: 5 });
      }
    },
  };
}
