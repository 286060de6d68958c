/**
 * What the database and Redis did during a measurement: the profile behind "what limits".
 *
 * - pg_stat_database of the benchmark's database (commits, rollbacks, rows touched) and
 *   pg_stat_wal (WAL records, bytes, writes and fsyncs; cluster-wide, so other users' work
 *   on the same server is included);
 * - with --profile: pg_stat_user_tables (scans and row changes per table), pg_stat_statements
 *   when the server has it loaded (shared_preload_libraries; the benchmark never changes the
 *   server's configuration), and a sampler of pg_stat_activity (state and wait event of the
 *   benchmark's backends every 10 ms);
 * - Redis INFO commandstats (calls per command; the Redis is shared, so approximate).
 *
 * PostgreSQL 15 backends publish their counters when they go idle at most once a second and
 * otherwise up to 10 s later, and at exit. `settleStats` makes a window's counters complete:
 * pools that closed are waited for until their backends are gone, and pools that stay open get
 * one statement on every connection more than a second after their last flush.
 */
import postgres from "postgres";
import type { RedisClient } from "../../src/queue/redisClient.ts";
import { now, pollUntil } from "./util.ts";

export interface DbCounters {
  commits: number;
  rollbacks: number;
  fetched: number;
  inserted: number;
  updated: number;
  deleted: number;
  walRecords: number;
  walBytes: number;
  walWrites: number;
  walSyncs: number;
}

export interface TableCounters {
  table: string;
  seqScan: number;
  idxScan: number;
  inserted: number;
  updated: number;
  hotUpdated: number;
  deleted: number;
}

export interface StatementCounters {
  query: string;
  calls: number;
  /** Rows returned or changed. */
  rows: number;
  totalMs: number;
}

export interface ActivitySample {
  role: string;
  state: string;
  wait: string;
  samples: number;
}

export interface DbProfile {
  counters: DbCounters;
  tables: TableCounters[] | null;
  statements: StatementCounters[] | null;
  activity: ActivitySample[] | null;
  activitySamples: number;
}

/** A maintenance connection (database `postgres`) that reads the server's statistics. */
export class StatsReader {
  private readonly admin: postgres.Sql;
  private readonly perDb = new Map<string, postgres.Sql>();
  /** Per database, once probed: false when pg_stat_statements cannot be read there. */
  private readonly statementsAvailable = new Map<string, boolean>();
  statementsNote = "";

  constructor(private readonly serverUrl: string) {
    const u = new URL(serverUrl);
    u.pathname = "/postgres";
    this.admin = postgres(u.toString(), { max: 1, onnotice: () => {}, connection: { application_name: "agentq-bench-stats" } });
  }

  private db(name: string): postgres.Sql {
    let sql = this.perDb.get(name);
    if (!sql) {
      const u = new URL(this.serverUrl);
      u.pathname = `/${name}`;
      sql = postgres(u.toString(), { max: 1, onnotice: () => {}, connection: { application_name: "agentq-bench-stats" } });
      this.perDb.set(name, sql);
    }
    return sql;
  }

  async counters(database: string): Promise<DbCounters> {
    const [d] = await this.admin<{ c: string; r: string; f: string; i: string; u: string; d: string }[]>`
      select xact_commit as c, xact_rollback as r, tup_fetched as f, tup_inserted as i, tup_updated as u, tup_deleted as d
      from pg_stat_database where datname = ${database}`;
    const [w] = await this.admin<{ records: string; bytes: string; writes: string; syncs: string }[]>`
      select wal_records as records, wal_bytes as bytes, wal_write as writes, wal_sync as syncs from pg_stat_wal`;
    return {
      commits: Number(d?.c ?? 0),
      rollbacks: Number(d?.r ?? 0),
      fetched: Number(d?.f ?? 0),
      inserted: Number(d?.i ?? 0),
      updated: Number(d?.u ?? 0),
      deleted: Number(d?.d ?? 0),
      walRecords: Number(w?.records ?? 0),
      walBytes: Number(w?.bytes ?? 0),
      walWrites: Number(w?.writes ?? 0),
      walSyncs: Number(w?.syncs ?? 0),
    };
  }

  async tables(database: string): Promise<TableCounters[]> {
    const rows = await this.db(database)<{ t: string; s: string; x: string | null; i: string; u: string; h: string; d: string }[]>`
      select schemaname || '.' || relname as t, seq_scan as s, idx_scan as x, n_tup_ins as i, n_tup_upd as u, n_tup_hot_upd as h, n_tup_del as d
      from pg_stat_user_tables`;
    return rows.map((r) => ({
      table: r.t,
      seqScan: Number(r.s),
      idxScan: Number(r.x ?? 0),
      inserted: Number(r.i),
      updated: Number(r.u),
      hotUpdated: Number(r.h),
      deleted: Number(r.d),
    }));
  }

  /** Whether pg_stat_statements can be read (the extension is created in `database` if missing). */
  async probeStatements(database: string): Promise<boolean> {
    const known = this.statementsAvailable.get(database);
    if (known !== undefined) return known;
    const sql = this.db(database);
    try {
      await sql`create extension if not exists pg_stat_statements`;
      await sql`select 1 from pg_stat_statements limit 1`;
      this.statementsAvailable.set(database, true);
      this.statementsNote = "pg_stat_statements is loaded: per-statement calls and time are shown";
    } catch (error) {
      this.statementsAvailable.set(database, false);
      const [s] = await this.admin<{ v: string }[]>`select current_setting('shared_preload_libraries') as v`;
      this.statementsNote =
        `pg_stat_statements is not loaded on this server (shared_preload_libraries = '${s?.v ?? ""}'; ` +
        `${error instanceof Error ? error.message : String(error)}); loading it needs a server restart, which the benchmark never does, ` +
        "so statements are profiled from pg_stat_database, pg_stat_user_tables and pg_stat_activity samples instead";
    }
    return this.statementsAvailable.get(database) ?? false;
  }

  async statements(database: string): Promise<StatementCounters[]> {
    const rows = await this.db(database)<{ q: string; c: string; r: string; t: number }[]>`
      select query as q, calls as c, rows as r, total_exec_time as t from pg_stat_statements
      where dbid = (select oid from pg_database where datname = ${database})`;
    return rows.map((r) => ({ query: r.q, calls: Number(r.c), rows: Number(r.r), totalMs: Number(r.t) }));
  }

  /** Resolves once no backend of `database` whose application_name is LIKE `app` remains. */
  async backendsGone(database: string, app: string, timeoutMs = 15_000): Promise<void> {
    await pollUntil(
      async () => {
        const [r] = await this.admin<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity where datname = ${database} and application_name like ${app}`;
        return (r?.n ?? 0) === 0;
      },
      20,
      timeoutMs,
      `backends of ${database} (${app}) to exit`,
    );
  }

  /** Samples the state and wait event of `database`'s backends every `everyMs` until stopped. */
  sampleActivity(database: string, role: (applicationName: string) => string, everyMs = 10): { stop(): Promise<{ rows: ActivitySample[]; samples: number }> } {
    const counts = new Map<string, ActivitySample>();
    let samples = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        const t = now();
        const rows = await this.admin<{ a: string; s: string | null; w: string | null }[]>`
          select application_name as a, state as s, wait_event_type || ':' || wait_event as w
          from pg_stat_activity where datname = ${database} and application_name <> 'agentq-bench-stats'`;
        samples++;
        for (const r of rows) {
          const sample = { role: role(r.a), state: r.s ?? "?", wait: r.w ?? "-" };
          const key = `${sample.role}\0${sample.state}\0${sample.wait}`;
          const c = counts.get(key);
          if (c) c.samples++;
          else counts.set(key, { ...sample, samples: 1 });
        }
        const rest = everyMs - (now() - t);
        if (rest > 0) await Bun.sleep(rest);
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return { rows: [...counts.values()].sort((a, b) => b.samples - a.samples), samples };
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.admin.end({ timeout: 5 }), ...[...this.perDb.values()].map((s) => s.end({ timeout: 5 }))]);
  }
}

/**
 * Gives every connection of `pools` one statement more than a second after its last
 * statistics flush, so that PostgreSQL publishes its pending counters (see the file comment).
 */
export async function settleOpenPools(pools: { sql: postgres.Sql; max: number }[]): Promise<void> {
  await Bun.sleep(1100);
  await Promise.all(pools.flatMap(({ sql, max }) => Array.from({ length: max }, () => sql`select pg_sleep(0.02)`)));
}

export function diffCounters(a: DbCounters, b: DbCounters): DbCounters {
  const out = {} as DbCounters;
  for (const k of Object.keys(b) as (keyof DbCounters)[]) out[k] = b[k] - a[k];
  return out;
}

export function diffTables(a: TableCounters[], b: TableCounters[]): TableCounters[] {
  const before = new Map(a.map((t) => [t.table, t]));
  return b
    .map((t) => {
      const p = before.get(t.table);
      return {
        table: t.table,
        seqScan: t.seqScan - (p?.seqScan ?? 0),
        idxScan: t.idxScan - (p?.idxScan ?? 0),
        inserted: t.inserted - (p?.inserted ?? 0),
        updated: t.updated - (p?.updated ?? 0),
        hotUpdated: t.hotUpdated - (p?.hotUpdated ?? 0),
        deleted: t.deleted - (p?.deleted ?? 0),
      };
    })
    .filter((t) => t.seqScan + t.idxScan + t.inserted + t.updated + t.deleted > 0);
}

export function diffStatements(a: StatementCounters[], b: StatementCounters[]): StatementCounters[] {
  const before = new Map(a.map((s) => [s.query, s]));
  return b
    .map((s) => {
      const was = before.get(s.query);
      return { query: s.query, calls: s.calls - (was?.calls ?? 0), rows: s.rows - (was?.rows ?? 0), totalMs: s.totalMs - (was?.totalMs ?? 0) };
    })
    .filter((s) => s.calls > 0)
    .sort((x, y) => y.totalMs - x.totalMs);
}

// ---------------------------------------------------------------------------
// Redis

export type RedisCalls = Map<string, number>;

export async function redisCalls(redis: RedisClient): Promise<RedisCalls> {
  const text = await redis.info("commandstats");
  const out: RedisCalls = new Map();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Calls per command during the window, the INFO calls that read them left out. */
export function diffRedis(a: RedisCalls, b: RedisCalls): { total: number; top: [string, number][] } {
  const d: [string, number][] = [];
  for (const [cmd, calls] of b) {
    if (cmd === "info") continue;
    const n = calls - (a.get(cmd) ?? 0);
    if (n > 0) d.push([cmd, n]);
  }
  d.sort((x, y) => y[1] - x[1]);
  return { total: d.reduce((s, [, n]) => s + n, 0), top: d };
}
