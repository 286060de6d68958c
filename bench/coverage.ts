/**
 * Coverage-meter benchmark: the production one-statement meter
 * (src/coverage/meter.ts -> src/db/coverage.ts) against a naive baseline that
 * issues O(|scope|) queries (one per node for the walk, two per node for the
 * counts), on a generated corpus of 10,000 taxonomy nodes, 200,000 documents,
 * 1,000,000 mappings and 1,000,000 chunks.
 *
 * The corpus lives in its own database (default `agentq_bench` on the server of
 * DATABASE_URL; BENCH_DATABASE_URL overrides) and is generated server-side with
 * INSERT ... SELECT over generate_series, deterministically (hash functions of
 * the row number, no random()). A later run reuses it when it is complete;
 * `--regenerate` rebuilds it.
 */
import postgres from "postgres";
import os from "node:os";
import { readFileSync } from "node:fs";
import { drizzle } from "drizzle-orm/postgres-js";
import { ensureDatabase, migrateDatabase } from "../src/db/migrate.ts";
import { openDatabase, type Database, type Db } from "../src/db/client.ts";
import * as schema from "../src/db/schema.ts";
import { measureCoverage, type AgentScope, type MeterSettings } from "../src/coverage/meter.ts";
import { finalizeCoverage, type CoverageReport, type NodeStats } from "../src/core/coverage.ts";
import { DEFAULTS } from "../src/config.ts";
import { parseCommandLine, writeBenchmarkSection } from "./support.ts";

// ---------------------------------------------------------------------------
// Corpus shape

const VERSION = "bench-1";
/** Bump when the generator changes: a stored corpus with another tag is regenerated. */
const CORPUS_TAG = "agentq-bench-coverage/v1";
const SEED = 20_250_601;
/** Layer sizes of the taxonomy DAG, top to bottom (sum = node count). */
const LAYERS = [20, 80, 300, 1_100, 3_000, 5_500] as const;
const NODES = LAYERS.reduce((a, b) => a + b, 0);
/** Share of non-root nodes that get a second parent (a random node of the layer above). */
const SECOND_PARENT_SHARE = 0.6;
const DOCUMENTS = 200_000;
const MAPPINGS_PER_DOCUMENT = 5;
const MAPPINGS = DOCUMENTS * MAPPINGS_PER_DOCUMENT;
/** Chunks per document pair: 1..9 and its complement to 10, so the total is exact. */
const CHUNKS = (DOCUMENTS / 2) * 10;
/** Multiplier coprime with NODES: scatters popular mapping slots over every layer. */
const NODE_PERMUTATION = 7_919;

const AGENTS = [
  { key: "small", name: "bench agent ~50 nodes", targetScope: 50, firstRootShare: 1 },
  { key: "large", name: "bench agent ~1000 nodes", targetScope: 1_000, firstRootShare: 0.6 },
] as const;

const SETTINGS: MeterSettings = {
  confidenceThreshold: DEFAULTS.confidenceThreshold,
  defaultTargetDocuments: DEFAULTS.defaultTargetDocuments,
};

const SECTION_TITLE = "## Coverage meter";

// ---------------------------------------------------------------------------
// Flags

interface Options {
  regenerate: boolean;
  explain: boolean;
  runs: number;
  writeDocs: boolean;
}

const HELP = `usage: bun run bench coverage [--regenerate] [--runs N] [--explain] [--no-docs]

  --regenerate  rebuild the corpus even if a complete one is there
  --runs N      measured runs per agent and method (default 9; one warm-up run precedes them)
  --explain     print EXPLAIN (ANALYZE, BUFFERS) of the production statement for each agent
  --no-docs     do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md

Database: BENCH_DATABASE_URL, else database agentq_bench on the server of DATABASE_URL
(default postgres://root@127.0.0.1:5432). The database is created and migrated if missing.`;

function parseArgs(args: string[]): Options | string {
  const o: Options = { regenerate: false, explain: false, runs: 9, writeDocs: true };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--regenerate") o.regenerate = true;
    else if (a === "--explain") o.explain = true;
    else if (a === "--no-docs") o.writeDocs = false;
    else if (a === "--runs") {
      const n = Number(args[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 100) return "--runs takes an integer from 1 to 100";
      o.runs = n;
    } else return `unknown flag: ${a}`;
  }
  return o;
}

export function benchDatabaseUrl(env: Record<string, string | undefined> = process.env): string {
  if (env.BENCH_DATABASE_URL) return env.BENCH_DATABASE_URL;
  const u = new URL(env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  u.pathname = "/agentq_bench";
  return u.toString();
}

/** The benchmark truncates tables: refuse the application's own database. */
function assertNotAppDatabase(url: string): void {
  const name = (u: string) => decodeURIComponent(new URL(u).pathname.replace(/^\//, ""));
  const bench = name(url);
  const app = name(process.env.DATABASE_URL ?? DEFAULTS.databaseUrl);
  if (bench === "agentq" || bench === app || bench === "postgres")
    throw new Error(`refusing to use database "${bench}" for the benchmark: it truncates tables; pick another BENCH_DATABASE_URL`);
}

// ---------------------------------------------------------------------------
// Deterministic SQL expressions (hashes of the row number; no random())

const hash = (expr: string, salt: number) => `hashint8extended((${expr})::int8, ${SEED + salt})`;
/** An integer in [0, n). */
const hmod = (expr: string, salt: number, n: number) => `((${hash(expr, salt)} % ${n}) + ${n}) % ${n}`;
/** A float in [0, 1) from the low 52 bits of the hash. */
const unit = (expr: string, salt: number) => `((${hash(expr, salt)} & 4503599627370495)::float8 / 4503599627370496.0)`;
const nodeUuid = (expr: string) => `md5('bench-node:' || (${expr}))::uuid`;
const docUuid = (expr: string) => `md5('bench-doc:' || (${expr}))::uuid`;
/** Chunks of document d: pairs (2k, 2k+1) get m+1 and 9-m, m in 0..8. */
const chunkCountOf = (d: string) =>
  `(case when (${d}) % 2 = 0 then 1 + ${hmod(`(${d}) / 2`, 4, 9)} else 9 - ${hmod(`(${d}) / 2`, 4, 9)} end)`;

const VOCABULARY = [
  "agent", "taxonomy", "coverage", "document", "chunk", "query", "index", "vector", "graph", "node",
  "edge", "scope", "target", "gap", "score", "model", "retrieval", "ranking", "search", "token",
  "corpus", "source", "label", "version", "policy", "budget", "latency", "queue", "worker", "lease",
  "timeout", "retry", "webhook", "signal", "metric", "trace", "schema", "table", "column", "row",
  "cluster", "shard", "replica", "backup", "restore", "audit", "access", "secret", "tenant", "region",
  "energy", "climate", "finance", "health", "law", "biology", "physics", "history", "music", "sport",
  "market", "supply", "demand", "price",
];

// ---------------------------------------------------------------------------
// Corpus

interface CorpusMeta {
  tag: string;
  generatedAt: string;
  generationMs: number;
  steps: Record<string, number>;
}

async function readMeta(sql: postgres.Sql): Promise<CorpusMeta | null> {
  const [row] = await sql<{ comment: string | null }[]>`
    select shobj_description(oid, 'pg_database') as comment from pg_database where datname = current_database()`;
  if (!row?.comment) return null;
  try {
    return JSON.parse(row.comment) as CorpusMeta;
  } catch {
    return null;
  }
}

async function writeMeta(sql: postgres.Sql, meta: CorpusMeta): Promise<void> {
  const [{ db } = { db: "" }] = await sql<{ db: string }[]>`select current_database() as db`;
  await sql.unsafe(`comment on database "${db.replaceAll('"', '""')}" is '${JSON.stringify(meta).replaceAll("'", "''")}'`);
}

interface Counts {
  nodes: number;
  edges: number;
  documents: number;
  mappings: number;
  chunks: number;
  chunkCountSum: number;
}

async function countCorpus(sql: postgres.Sql): Promise<Counts> {
  const [r] = await sql<Record<keyof Counts, string>[]>`
    select (select count(*) from taxonomy_nodes where version = ${VERSION}) as nodes,
           (select count(*) from taxonomy_edges where version = ${VERSION}) as edges,
           (select count(*) from documents) as documents,
           (select count(*) from doc_taxonomy where version = ${VERSION}) as mappings,
           (select count(*) from chunks) as chunks,
           (select coalesce(sum(chunk_count), 0) from documents) as "chunkCountSum"`;
  if (!r) throw new Error("count query returned nothing");
  return {
    nodes: Number(r.nodes),
    edges: Number(r.edges),
    documents: Number(r.documents),
    mappings: Number(r.mappings),
    chunks: Number(r.chunks),
    chunkCountSum: Number(r.chunkCountSum),
  };
}

const corpusComplete = (c: Counts) =>
  c.nodes === NODES &&
  c.edges > 0 &&
  c.documents === DOCUMENTS &&
  c.mappings === MAPPINGS &&
  c.chunks === CHUNKS &&
  c.chunkCountSum === CHUNKS;

async function timed<T>(steps: Record<string, number>, name: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await f();
  steps[name] = performance.now() - t0;
  console.log(`  ${name.padEnd(22)} ${fmtMs(steps[name]!).padStart(10)}`);
  return result;
}

async function generateCorpus(sql: postgres.Sql): Promise<CorpusMeta> {
  const steps: Record<string, number> = {};
  const t0 = performance.now();
  const layers = LAYERS.map((n, k) => `(${k}, ${LAYERS.slice(0, k).reduce((a, b) => a + b, 0)}, ${n})`).join(", ");
  const vocab = `array[${VOCABULARY.map((w) => `'${w}'`).join(", ")}]`;
  const V = VOCABULARY.length;

  await sql.begin(async (tx) => {
    await tx`set local synchronous_commit = off`;
    await tx`set local work_mem = '64MB'`;
    await tx`set local maintenance_work_mem = '256MB'`;
    // A larger pending list means fewer (batched) GIN insertions for chunks.tsv.
    await tx`set local gin_pending_list_limit = '64MB'`;
    await timed(steps, "truncate", () =>
      tx.unsafe(`truncate taxonomy_nodes, taxonomy_edges, documents, chunks, doc_taxonomy, agents,
                          coverage_targets, background_tasks, coverage_history, webhook_deliveries cascade`),
    );
    await timed(steps, "taxonomy_nodes", () =>
      tx.unsafe(`
        insert into taxonomy_nodes (node_id, version, label, created_at)
        select ${nodeUuid("i")}, '${VERSION}', 'bench node ' || lpad(i::text, 5, '0'), timestamptz '2025-01-01 00:00:00+00'
        from generate_series(0, ${NODES - 1}) as i`),
    );
    // Layered DAG: each node below the top layer has a primary parent in the layer above
    // (contiguous blocks, so subtrees are local) and, for SECOND_PARENT_SHARE of them, a
    // second parent anywhere in that layer: descendants are shared between subtrees.
    await timed(steps, "taxonomy_edges", () =>
      tx.unsafe(`
        with layers(k, s, n) as (values ${layers}),
        members as (
          select l.s + j as i, j, l.n, p.s as ps, p.n as pn
          from layers l join layers p on p.k = l.k - 1, generate_series(0, l.n - 1) as j
        ),
        pairs as (
          select i, ps + (j * pn) / n as parent from members
          union
          select i, ps + ((${hash("i", 3)} % pn) + pn) % pn from members
          where ${unit("i", 2)} < ${SECOND_PARENT_SHARE}
        )
        insert into taxonomy_edges (parent_id, child_id, version)
        select ${nodeUuid("parent")}, ${nodeUuid("i")}, '${VERSION}' from pairs`),
    );
    await timed(steps, "documents", () =>
      tx.unsafe(`
        insert into documents (doc_id, title, source_url, content_type, chunk_count, created_at)
        select ${docUuid("d")}, 'Bench document ' || d, 'https://bench.invalid/doc/' || d, 'text/plain',
               ${chunkCountOf("d")}, timestamptz '2025-01-01 00:00:00+00' + d * interval '1 second'
        from generate_series(0, ${DOCUMENTS - 1}) as d`),
    );
    // Node popularity is skewed (slot = floor(N * u^3)): a few nodes hold thousands of
    // documents, the tail a few dozen; a document's 5 mappings sit on nearby slots
    // (stride 1..7, so they are distinct), permuted over the whole taxonomy.
    await timed(steps, "doc_taxonomy", () =>
      tx.unsafe(`
        insert into doc_taxonomy (doc_id, node_id, version, confidence)
        select ${docUuid("d")},
               ${nodeUuid(`((floor(${NODES} * power(${unit("d", 6)}, 3))::int8 + j * (1 + ${hmod("d", 7, 7)})) % ${NODES}) * ${NODE_PERMUTATION} % ${NODES}`)},
               '${VERSION}',
               least(1, round(${unit(`d * ${MAPPINGS_PER_DOCUMENT} + j`, 8)}::numeric * 1.0001, 4))::float8
        from generate_series(0, ${DOCUMENTS - 1}) as d, generate_series(0, ${MAPPINGS_PER_DOCUMENT - 1}) as j`),
    );
    // Short texts (5 words) keep the generated tsvector column cheap.
    await timed(steps, "chunks", () =>
      tx.unsafe(`
        insert into chunks (chunk_id, doc_id, chunk_index, text, token_count)
        select md5('bench-chunk:' || d || ':' || c)::uuid, ${docUuid("d")}, c,
               w[1 + ${hmod("d * 16 + c", 10, V)}] || ' ' || w[1 + ${hmod("d * 16 + c", 11, V)}] || ' ' ||
               w[1 + ${hmod("d * 16 + c", 12, V)}] || ' ' || w[1 + ${hmod("d * 16 + c", 13, V)}] || ' ' ||
               w[1 + ${hmod("d * 16 + c", 14, V)}],
               5
        from (select ${vocab} as w) as v,
             generate_series(0, ${DOCUMENTS - 1}) as d,
             generate_series(0, ${chunkCountOf("d")} - 1) as c`),
    );
  });
  // Outside the transaction: VACUUM sets the visibility map (index-only scans; autovacuum
  // may be off or late on a bench server), ANALYZE gives the planner real statistics.
  await timed(steps, "vacuum analyze", () => sql`vacuum (analyze)`);
  const meta: CorpusMeta = {
    tag: CORPUS_TAG,
    generatedAt: new Date().toISOString(),
    generationMs: performance.now() - t0,
    steps,
  };
  await writeMeta(sql, meta);
  return meta;
}

// ---------------------------------------------------------------------------
// Agents: roots chosen so that the expanded scope lands near a target size

interface Graph {
  ids: string[];
  children: number[][];
}

async function loadGraph(sql: postgres.Sql): Promise<Graph> {
  const nodes = await sql<{ node_id: string }[]>`
    select node_id from taxonomy_nodes where version = ${VERSION} order by label`;
  const index = new Map(nodes.map((n, i) => [n.node_id, i]));
  const children: number[][] = nodes.map(() => []);
  const edges = await sql<{ parent_id: string; child_id: string }[]>`
    select parent_id, child_id from taxonomy_edges where version = ${VERSION} order by parent_id, child_id`;
  for (const e of edges) children[index.get(e.parent_id)!]!.push(index.get(e.child_id)!);
  return { ids: nodes.map((n) => n.node_id), children };
}

function descendants(g: Graph, roots: Iterable<number>, into = new Set<number>()): Set<number> {
  const stack = [...roots];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (into.has(n)) continue;
    into.add(n);
    for (const c of g.children[n]!) stack.push(c);
  }
  return into;
}

/**
 * First root: the node whose own scope is closest to firstShare * target; then, greedily,
 * the node whose addition brings the union closest to the target, while that improves it.
 */
function pickRoots(g: Graph, target: number, firstShare: number): { roots: number[]; scope: number } {
  const sizes = g.ids.map((_, i) => descendants(g, [i]).size);
  const closest = (want: number, ok: (i: number) => boolean) => {
    let best = -1;
    for (let i = 0; i < sizes.length; i++)
      if (ok(i) && (best < 0 || Math.abs(sizes[i]! - want) < Math.abs(sizes[best]! - want))) best = i;
    return best;
  };
  const first = closest(firstShare * target, () => true);
  const roots = [first];
  let scope = descendants(g, [first]);
  for (;;) {
    const room = target - scope.size;
    if (room <= 0) break;
    let best = -1;
    let bestSize = scope.size;
    for (let i = 0; i < sizes.length; i++) {
      if (scope.has(i) || sizes[i]! > room * 1.5) continue;
      const size = descendants(g, [i], new Set(scope)).size;
      if (Math.abs(size - target) < Math.abs(bestSize - target)) {
        best = i;
        bestSize = size;
      }
    }
    if (best < 0) break;
    roots.push(best);
    scope = descendants(g, [best], scope);
  }
  return { roots, scope: scope.size };
}

interface BenchAgent extends AgentScope {
  name: string;
  scopeSize: number;
  targets: number;
}

const agentUuid = (key: string) => new Bun.CryptoHasher("md5").update(`bench-agent:${key}`).digest("hex").replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");

async function createAgents(sql: postgres.Sql): Promise<BenchAgent[]> {
  const g = await loadGraph(sql);
  const out: BenchAgent[] = [];
  await sql`delete from agents where agent_id in ${sql(AGENTS.map((a) => agentUuid(a.key)))}`;
  for (const spec of AGENTS) {
    const { roots, scope } = pickRoots(g, spec.targetScope, spec.firstRootShare);
    const agentId = agentUuid(spec.key);
    const rootIds = roots.map((r) => g.ids[r]!);
    await sql`
      insert into agents (agent_id, name, taxonomy_node_ids, taxonomy_version, scope_description, level)
      values (${agentId}, ${spec.name}, ${rootIds}::uuid[], ${VERSION}, ${"benchmark agent, ~" + spec.targetScope + " nodes"}, 1)`;
    // A per-node target on every 10th scope node (deterministic), so the targets join is exercised.
    const scopeNodes = [...descendants(g, roots)].sort((a, b) => a - b).filter((_, i) => i % 10 === 0);
    const targets = scopeNodes.map((n, i) => ({ agent_id: agentId, node_id: g.ids[n]!, target_document_count: 5 + ((i * 7) % 40) }));
    if (targets.length > 0) await sql`insert into coverage_targets ${sql(targets)}`;
    out.push({
      agent_id: agentId,
      name: spec.name,
      taxonomy_node_ids: rootIds,
      taxonomy_version: VERSION,
      scopeSize: scope,
      targets: targets.length,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// The naive baseline: what a straightforward ORM-style implementation does

interface NaiveResult {
  report: CoverageReport;
  queries: number;
}

async function naiveCoverage(sql: postgres.Sql, agent: AgentScope, settings: MeterSettings): Promise<NaiveResult> {
  let queries = 0;
  const v = agent.taxonomy_version;
  const c = settings.confidenceThreshold;
  // 1. Scope: breadth-first, one SELECT of children per node.
  const seen = new Set<string>(agent.taxonomy_node_ids);
  const order = [...seen];
  for (let head = 0; head < order.length; head++) {
    const rows = await sql<{ child_id: string }[]>`
      select child_id from taxonomy_edges where version = ${v} and parent_id = ${order[head]!}`;
    queries++;
    for (const r of rows)
      if (!seen.has(r.child_id)) {
        seen.add(r.child_id);
        order.push(r.child_id);
      }
  }
  // 2. Targets of the agent (one query).
  const targetRows = await sql<{ node_id: string; target_document_count: number }[]>`
    select node_id, target_document_count from coverage_targets where agent_id = ${agent.agent_id}`;
  queries++;
  const targets = new Map(targetRows.map((r) => [r.node_id, r.target_document_count]));
  // 3. Per node: its documents, then its chunk count; the union of documents in JS.
  const union = new Map<string, number>();
  const nodes: NodeStats[] = [];
  for (const nodeId of order) {
    const docs = await sql<{ doc_id: string; chunk_count: number }[]>`
      select distinct dt.doc_id, d.chunk_count
      from doc_taxonomy dt join documents d on d.doc_id = dt.doc_id
      where dt.node_id = ${nodeId} and dt.version = ${v} and dt.confidence >= ${c}::float8`;
    const [chunkRow] = await sql<{ chunks: number }[]>`
      select count(*)::int as chunks from chunks
      where doc_id in (select doc_id from doc_taxonomy
                       where node_id = ${nodeId} and version = ${v} and confidence >= ${c}::float8)`;
    queries += 2;
    for (const d of docs) union.set(d.doc_id, d.chunk_count);
    nodes.push({
      nodeId,
      documentCount: docs.length,
      chunkCount: chunkRow?.chunks ?? 0,
      target: targets.get(nodeId) ?? settings.defaultTargetDocuments,
    });
  }
  let totalChunks = 0;
  for (const n of union.values()) totalChunks += n;
  return { report: finalizeCoverage(nodes, { totalDocuments: union.size, totalChunks }), queries };
}

function assertSameCoverage(agent: string, production: CoverageReport, naive: CoverageReport): void {
  const problems: string[] = [];
  for (const k of ["overall_coverage", "total_documents", "total_chunks"] as const)
    if (production[k] !== naive[k]) problems.push(`${k}: production ${production[k]}, naive ${naive[k]}`);
  const p = production.node_coverage;
  const n = naive.node_coverage;
  const keys = new Set([...Object.keys(p), ...Object.keys(n)]);
  for (const id of keys) {
    const a = JSON.stringify(p[id] ?? null);
    const b = JSON.stringify(n[id] ?? null);
    if (a !== b) problems.push(`node ${id}: production ${a}, naive ${b}`);
    if (problems.length > 10) break;
  }
  if (problems.length > 0)
    throw new Error(`coverage mismatch for ${agent} (production vs naive):\n  ${problems.join("\n  ")}`);
}

// ---------------------------------------------------------------------------
// Timing and reporting

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Row {
  agent: BenchAgent;
  hits: number;
  coverage: CoverageReport;
  production: number[];
  naive: number[];
  naiveQueries: number;
}

interface Machine {
  cpu: string;
  cores: number;
  memory: string;
  bun: string;
  postgres: string;
  /** The server settings that matter most here, as found (the benchmark changes none). */
  pgSettings: string;
  date: string;
}

async function machineFacts(sql: postgres.Sql): Promise<Machine> {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  let memory = `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
    const kb = /^MemTotal:\s*(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
    if (kb) memory = `${(Number(kb) / 2 ** 20).toFixed(1)} GiB`;
  } catch {
    // not Linux: keep what os reports
  }
  const [v] = await sql<{ server_version: string }[]>`show server_version`;
  const settings = await sql<{ name: string; setting: string }[]>`
    select name, current_setting(name) as setting from pg_settings
    where name in ('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', 'autovacuum', 'max_parallel_workers_per_gather')
    order by name`;
  return {
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memory,
    bun: Bun.version,
    postgres: v?.server_version ?? "unknown",
    pgSettings: settings.map((r) => `${r.name}=${r.setting}`).join(", "),
    date: new Date().toISOString(),
  };
}

function resultTable(rows: Row[]): string[] {
  const header = ["agent", "roots", "scope nodes", "mappings hit", "production median (min)", "naive median (min)", "naive queries", "naive / production"];
  const body = rows.map((r) => [
    r.agent.name,
    String(r.agent.taxonomy_node_ids.length),
    String(r.agent.scopeSize),
    r.hits.toLocaleString("en-US"),
    `${fmtMs(median(r.production))} (${fmtMs(Math.min(...r.production))})`,
    `${fmtMs(median(r.naive))} (${fmtMs(Math.min(...r.naive))})`,
    r.naiveQueries.toLocaleString("en-US"),
    `${(median(r.naive) / median(r.production)).toFixed(1)}x`,
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...body.map(line)];
}

function writeDocs(section: string): void {
  writeBenchmarkSection(SECTION_TITLE, section);
}

function docsSection(machine: Machine, meta: CorpusMeta, reused: boolean, counts: Counts, runs: number, rows: Row[]): string {
  const gen = `${(meta.generationMs / 1000).toFixed(1)} s`;
  const steps = Object.entries(meta.steps)
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
    .join(", ");
  return [
    SECTION_TITLE,
    "",
    "`bun run bench coverage` (bench/coverage.ts). **Production**: `measureCoverage` of",
    "src/coverage/meter.ts, one SQL statement whatever the scope (recursive CTE over the DAG, then",
    "aggregates). **Naive**: what a per-node implementation does: a breadth-first walk with one",
    "`SELECT` of children per node, then for every scope node one query for its documents and one",
    "for its chunk count, and the union of documents in JS: about 3 queries per scope node. Both are",
    "checked to give the same overall coverage, totals and per-node figures before anything is timed.",
    `Each figure is the median (and minimum) of ${runs} measured runs after one warm-up, the two`,
    "methods alternating.",
    "",
    ...resultTable(rows),
    "",
    "The naive cost grows with the scope (about three round trips per node); the production cost",
    "grows with the mappings hit (one statement), so the ratio widens with the scope. `--explain`",
    "prints the production statement's plan for each agent.",
    "",
    `Corpus (database \`agentq_bench\` unless BENCH_DATABASE_URL says otherwise; taxonomy version \`${VERSION}\`):`,
    `${counts.nodes.toLocaleString("en-US")} taxonomy nodes in a ${LAYERS.length}-layer DAG (${counts.edges.toLocaleString("en-US")} edges;`,
    `${Math.round(SECOND_PARENT_SHARE * 100)}% of non-top nodes have two parents), ${counts.documents.toLocaleString("en-US")} documents,`,
    `${counts.mappings.toLocaleString("en-US")} doc_taxonomy mappings (5 per document, skewed node popularity, confidence`,
    `uniform on [0, 1]), ${counts.chunks.toLocaleString("en-US")} chunks (5-word texts; tsvector generated by PostgreSQL).`,
    `Confidence threshold ${SETTINGS.confidenceThreshold}, default target ${SETTINGS.defaultTargetDocuments}, a per-node target on every 10th scope node.`,
    `Generation (server-side INSERT ... SELECT generate_series, then VACUUM ANALYZE): **${gen}**`,
    `(${steps})${reused ? `, measured when the corpus was built on ${meta.generatedAt.slice(0, 10)}; this run reused it` : ""}.`,
    "",
    `Coverage results: ${rows
      .map((r) => `${r.agent.name}: ${r.coverage.overall_coverage}% of target, ${r.coverage.total_documents.toLocaleString("en-US")} documents, ${r.coverage.total_chunks.toLocaleString("en-US")} chunks`)
      .join("; ")}.`,
    "",
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory} RAM; Bun ${machine.bun}; PostgreSQL ${machine.postgres}`,
    `on the same host (${machine.pgSettings}); run ${machine.date}.`,
    "",
  ].join("\n");
}

/** Captures the statement and parameters the production meter sends, to EXPLAIN it. */
async function explainProduction(database: Database, agent: BenchAgent): Promise<string[]> {
  let captured: { query: string; params: unknown[] } | undefined;
  const spy: Db = drizzle(database.sql, {
    schema,
    logger: { logQuery: (query: string, params: unknown[]) => void (captured = { query, params }) },
  });
  await measureCoverage(spy, agent, SETTINGS);
  if (!captured) throw new Error("the production meter sent no statement");
  const rows = await database.sql.unsafe<{ "QUERY PLAN": string }[]>(
    `explain (analyze, buffers) ${captured.query}`,
    captured.params as postgres.ParameterOrJSON<never>[],
  );
  return rows.map((r) => r["QUERY PLAN"]);
}

async function countHits(sql: postgres.Sql, agent: BenchAgent): Promise<number> {
  const [r] = await sql<{ n: string }[]>`
    with recursive scope(node_id) as (
      select unnest(${agent.taxonomy_node_ids}::uuid[])
      union
      select e.child_id from taxonomy_edges e join scope s on e.parent_id = s.node_id where e.version = ${VERSION}
    )
    select count(*) as n from doc_taxonomy dt join scope s on dt.node_id = s.node_id
    where dt.version = ${VERSION} and dt.confidence >= ${SETTINGS.confidenceThreshold}::float8`;
  return Number(r?.n ?? 0);
}

// ---------------------------------------------------------------------------

export async function run(args: string[]): Promise<number> {
  const opts = parseCommandLine(args, HELP, parseArgs);
  if (typeof opts === "number") return opts;
  const url = benchDatabaseUrl();
  assertNotAppDatabase(url);
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1));
  console.log(`coverage benchmark: database ${dbName}`);
  await ensureDatabase(url);
  await migrateDatabase(url);

  const database = openDatabase(url, { max: 2, applicationName: "agentq-bench" });
  const { sql } = database;
  try {
    let counts = await countCorpus(sql);
    let meta = await readMeta(sql);
    const reuse = !opts.regenerate && corpusComplete(counts) && meta?.tag === CORPUS_TAG;
    if (reuse && meta) {
      console.log(`corpus: reusing the one generated ${meta.generatedAt} in ${fmtMs(meta.generationMs)} (--regenerate rebuilds it)`);
    } else {
      console.log(`corpus: generating ${NODES} nodes, ${DOCUMENTS} documents, ${MAPPINGS} mappings, ${CHUNKS} chunks`);
      meta = await generateCorpus(sql);
      console.log(`  ${"total".padEnd(22)} ${fmtMs(meta.generationMs).padStart(10)}`);
      counts = await countCorpus(sql);
      if (!corpusComplete(counts)) throw new Error(`generated corpus has unexpected counts: ${JSON.stringify(counts)}`);
    }

    const tAgents = performance.now();
    const agents = await createAgents(sql);
    await sql`analyze agents, coverage_targets`;
    for (const a of agents)
      console.log(`agent "${a.name}": ${a.taxonomy_node_ids.length} root(s), scope ${a.scopeSize} nodes, ${a.targets} per-node targets`);
    console.log(`  (roots picked and agents written in ${fmtMs(performance.now() - tAgents)})`);

    const rows: Row[] = [];
    for (const agent of agents) {
      // Warm-up doubles as the correctness check.
      const production = await measureCoverage(database.db, agent, SETTINGS);
      const naive = await naiveCoverage(sql, agent, SETTINGS);
      assertSameCoverage(agent.name, production, naive.report);
      if (Object.keys(production.node_coverage).length !== agent.scopeSize)
        throw new Error(`${agent.name}: production scope has ${Object.keys(production.node_coverage).length} nodes, expected ${agent.scopeSize}`);
      const row: Row = { agent, hits: await countHits(sql, agent), coverage: production, production: [], naive: [], naiveQueries: naive.queries };
      for (let i = 0; i < opts.runs; i++) {
        let t0 = performance.now();
        const p = await measureCoverage(database.db, agent, SETTINGS);
        row.production.push(performance.now() - t0);
        t0 = performance.now();
        const n = await naiveCoverage(sql, agent, SETTINGS);
        row.naive.push(performance.now() - t0);
        assertSameCoverage(agent.name, p, n.report);
      }
      console.log(
        `  ${agent.name}: coverage ${production.overall_coverage}%, ${production.total_documents} documents, ` +
          `${production.total_chunks} chunks (both methods agree); ${naive.queries} naive queries per run; runs in ms:`,
      );
      console.log(`    production ${row.production.map((t) => t.toFixed(1)).join(" ")}`);
      console.log(`    naive      ${row.naive.map((t) => t.toFixed(0)).join(" ")}`);
      rows.push(row);
    }

    const machine = await machineFacts(sql);
    console.log("");
    for (const line of resultTable(rows)) console.log(line);
    console.log("");
    console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memory}; Bun ${machine.bun}; PostgreSQL ${machine.postgres}; ${machine.date}`);
    console.log(`postgres settings: ${machine.pgSettings}`);
    console.log(`corpus generation: ${fmtMs(meta.generationMs)}${reuse ? " (earlier run)" : ""}`);

    if (opts.explain)
      for (const agent of agents) {
        console.log(`\nEXPLAIN (ANALYZE, BUFFERS) of the production statement, ${agent.name}:`);
        for (const line of await explainProduction(database, agent)) console.log(`  ${line}`);
      }

    if (opts.writeDocs) {
      writeDocs(docsSection(machine, meta, reuse, counts, opts.runs, rows));
      console.log(`\nwrote the "${SECTION_TITLE}" section of docs/benchmarks.md`);
    }
    return 0;
  } finally {
    await database.close();
  }
}
