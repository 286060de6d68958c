/**
 * The soak test's own world: database `agentq_bench_soak` (BENCH_SOAK_DATABASE_URL overrides;
 * its tables are truncated), Redis prefix `agentq-bench-soak` (its keys deleted at start and
 * end), the environment every agentq process of the run gets, and the agents:
 *
 *   - TINY_AGENTS one-node agents with nothing mapped: the refreshes of the load (and of the
 *     capacity burn-down), a few milliseconds each, spread so completions do not queue on one
 *     agent's row;
 *   - one heavy agent whose one node has HEAVY_DOCUMENTS documents mapped: its refresh runs a
 *     few hundred milliseconds inside PostgreSQL, long enough to be cancelled while running
 *     (the tiny ones end before a DELETE can reach them).
 */
import { randomUUID } from "node:crypto";
import { DEFAULTS, loadConfig, type Config } from "../../src/config.ts";
import { ensureDatabase, migrateDatabase } from "../../src/db/migrate.ts";
import { openRuntime, type Runtime } from "../../src/main.ts";
import { upsertTaxonomy } from "../../src/db/taxonomy.ts";
import { queueKeys } from "../../src/queue/keys.ts";

export const REDIS_PREFIX = "agentq-bench-soak";
export const API_KEY = "bench-soak-key-0123456789abcdef";
const SECRET = `whsec_${Buffer.from("agentq-bench-soak-secret-000001").toString("base64")}`;
export const TINY_AGENTS = 256;
export const HEAVY_DOCUMENTS = 60_000;
const VERSION = "bench-soak";
/** The retry schedule of the run: three quick retries (the receiver fails a few requests on purpose). */
export const WEBHOOK_SCHEDULE = "1s,2s,4s";
/** Per window of 60 s; far above the load, so the limiter counts every request (its keys are in Redis) and refuses none. */
const RATE_LIMIT = 1_000_000;

export function soakDatabaseUrl(env: Record<string, string | undefined> = process.env): string {
  if (env.BENCH_SOAK_DATABASE_URL) return env.BENCH_SOAK_DATABASE_URL;
  const u = new URL(env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench_soak";
  return u.toString();
}

export const databaseName = (url: string) => decodeURIComponent(new URL(url).pathname.replace(/^\//, ""));

/** The soak truncates tables: refuse the application's database. */
function assertDedicatedDatabase(url: string): void {
  const name = databaseName(url);
  if (["agentq", "postgres", databaseName(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl)].includes(name))
    throw new Error(`refusing to use database "${name}" for the soak test: it truncates tables; set BENCH_SOAK_DATABASE_URL`);
}

/** The environment of the API and supervisor processes (and the benchmark's own runtime's configuration). */
export function serviceEnv(databaseUrl: string, redisUrl: string): Record<string, string> {
  return {
    NODE_ENV: "production",
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    AGENTQ_REDIS_PREFIX: REDIS_PREFIX,
    AGENTQ_API_KEYS: API_KEY,
    AGENTQ_WEBHOOK_SECRETS: SECRET,
    // The receiver is on loopback over plain HTTP.
    AGENTQ_WEBHOOK_ALLOW_HTTP: "true",
    AGENTQ_WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
    AGENTQ_WEBHOOK_SCHEDULE: WEBHOOK_SCHEDULE,
    AGENTQ_WEBHOOK_CONCURRENCY: "64",
    AGENTQ_RATE_LIMIT_ENQUEUE: String(RATE_LIMIT),
    AGENTQ_RATE_LIMIT_READ: String(RATE_LIMIT),
    // Warnings and errors only: at info the API would log a line per request of the load.
    LOG_LEVEL: "warn",
  };
}

export interface World {
  runtime: Runtime;
  databaseUrl: string;
  database: string;
  redisUrl: string;
  tiny: string[];
  heavy: string;
  env: Record<string, string>;
}

/** Deletes the prefix's keys (SCAN, not KEYS: the server is shared); returns how many. */
export async function deletePrefix(runtime: Runtime): Promise<number> {
  let removed = 0;
  let cursor = "0";
  do {
    const [next, keys] = await runtime.redis.scan(cursor, "MATCH", queueKeys(REDIS_PREFIX).pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) removed += await runtime.redis.del(...keys);
  } while (cursor !== "0");
  return removed;
}

export async function prepareWorld(): Promise<World> {
  const databaseUrl = soakDatabaseUrl();
  assertDedicatedDatabase(databaseUrl);
  const redisUrl = process.env.REDIS_URL ?? DEFAULTS.redisUrl;
  await ensureDatabase(databaseUrl);
  await migrateDatabase(databaseUrl);
  const env = serviceEnv(databaseUrl, redisUrl);
  const config: Config = loadConfig(env);
  const runtime = await openRuntime(config, "bench-soak");
  const { sql } = runtime.database;
  await sql.unsafe(
    "truncate agents, background_tasks, coverage_history, webhook_deliveries, webhook_outbox, webhook_gone_urls, documents, chunks, doc_taxonomy, taxonomy_nodes, taxonomy_edges cascade",
  );
  const removed = await deletePrefix(runtime);
  if (removed > 0) console.log(`removed ${removed} leftover keys under ${REDIS_PREFIX}:`);
  const tinyNode = randomUUID();
  const heavyNode = randomUUID();
  await upsertTaxonomy(runtime.database.db, VERSION, [
    { node_id: tinyNode, label: "soak tiny node" },
    { node_id: heavyNode, label: "soak heavy node" },
  ]);
  const tiny = (
    await sql<{ agent_id: string }[]>`
      insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
      select gen_random_uuid(), 'soak agent ' || i, array[${tinyNode}::uuid], ${VERSION}, 'one node', 1
      from generate_series(1, ${TINY_AGENTS}) as i returning agent_id`
  ).map((r) => r.agent_id);
  await sql`
    insert into documents (doc_id, title, chunk_count)
    select gen_random_uuid(), 'soak document ' || i, 1 + i % 7 from generate_series(1, ${HEAVY_DOCUMENTS}) as i`;
  await sql`insert into doc_taxonomy (doc_id, node_id, version, confidence) select doc_id, ${heavyNode}, ${VERSION}, 0.9 from documents`;
  await sql`analyze documents`;
  await sql`analyze doc_taxonomy`;
  const [heavy] = await sql<{ agent_id: string }[]>`
    insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
    values (gen_random_uuid(), 'soak heavy agent', array[${heavyNode}::uuid], ${VERSION}, 'one node, many documents', 1) returning agent_id`;
  return { runtime, databaseUrl, database: databaseName(databaseUrl), redisUrl, tiny, heavy: heavy!.agent_id, env };
}
