/**
 * Schema-driven fuzzing of every API operation, through the real app, PostgreSQL and Redis.
 * Requests are generated from the served OpenAPI document (so a new route is fuzzed without
 * touching this file): mostly well-formed values pointing at real rows, with random
 * mutations at every level (wrong types, out-of-range numbers, overlong and NUL-bearing
 * strings, missing required and unknown fields, junk path segments and query values, values
 * nested 1 to 50,000 levels deep, impossible calendar dates and extreme years). The
 * invariant: never a 5xx, and every error in the one error shape. The generator is seeded,
 * and a failure prints the request, so any finding can be replayed. CI runs it in
 * development and in production mode (NODE_ENV=production), where Elysia formats errors
 * differently.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createTestContext, type TestContext, type TestResponse } from "../helpers/app.ts";
import { postAgent, postDocument, postTaxonomy, uuid } from "../helpers/fixtures.ts";

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  const?: unknown;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  additionalProperties?: boolean | Schema;
  patternProperties?: Record<string, Schema>;
}
interface Operation {
  parameters?: { name: string; in: "path" | "query"; required?: boolean; schema: Schema }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}

const SEED = Number(process.env.FUZZ_SEED ?? 20261130);
const REQUESTS_PER_OPERATION = Number(process.env.FUZZ_REQUESTS ?? 60);
const MUTATION_RATE = 0.15;

/** mulberry32: small, fast, good enough to pick test inputs reproducibly. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const chance = (p: number) => random() < p;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

const JUNK_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 31, 2 ** 53 + 1, "", "x", " ", "\u0000", "0", "-0", "NaN", "null", [], [null], {}, { a: 1 }, "ünïcødé ✓ 🙂", "x".repeat(5000), "' or 1=1 --", "%00", "../..", "{}"];
const JUNK_SEGMENTS = ["x", "0", "-1", "null", "%00", "%2e%2e", "..", "%20", "%F0%9F%99%82", "a".repeat(300), encodeURIComponent("' or 1=1 --"), "00000000-0000-0000-0000-000000000000", "12345678-1234-1234-1234-1234567890ab", "agent-coverage-x", "agent-coverage-01a22d92-0e10-7487-9080-3cc9c06fcdb3"];
// Webhook URLs never name a host to resolve: DNS answers would make the test depend on the network.
const WEBHOOK_URLS = ["https://93.184.215.14/hook", "http://127.0.0.1:9/x", "https://10.0.0.1/", "https://[::1]/", "https://user:pw@93.184.215.14/", "ftp://93.184.215.14/", "https://93.184.215.14/\u0000"];

/**
 * A value nested `depth` levels deep. It stays a marker until the request is written, then
 * becomes JSON text directly: JSON.stringify itself overflows the stack past ~40,000 levels.
 */
class Deep {
  constructor(
    readonly depth: number,
    readonly shape: "arrays" | "objects" | "mixed",
    readonly leaf: string,
  ) {}
  text(): string {
    if (this.shape === "arrays") return "[".repeat(this.depth) + this.leaf + "]".repeat(this.depth);
    if (this.shape === "objects") return '{"a":'.repeat(this.depth) + (this.leaf || "1") + "}".repeat(this.depth);
    const half = Math.floor(this.depth / 2);
    return '[{"a":'.repeat(half) + (this.depth % 2 ? `[${this.leaf}]` : this.leaf || "1") + "}]".repeat(half);
  }
}

/** How often the depth and date mutators reached a request (the test asserts they did). */
const exercised = { deeperThan64: 0, deepest: 0, impossibleDates: 0 };

/** The depth mutator: around the limits (configs 32, bodies 64) and far past them, up to 50,000. */
function deepValue(): Deep {
  const depth = pick([1, 2, 3, 31, 32, 33, 63, 64, 65, 100, 1000, 5000, 20_000, 40_000, 50_000, int(1, 100), int(1, 50_000)]);
  return new Deep(depth, pick(["arrays", "objects", "mixed"] as const), pick(["", "1", '"x"', "null", "{}"]));
}

/** JSON text of a generated value, Deep markers written out in place. */
function toJson(value: unknown): string {
  const deep: Deep[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => (v instanceof Deep ? `__fuzz_deep_${deep.push(v) - 1}__` : v)) ?? "null";
  for (const d of deep) {
    if (d.depth > 64) exercised.deeperThan64++;
    exercised.deepest = Math.max(exercised.deepest, d.depth);
  }
  return text.replace(/"__fuzz_deep_(\d+)__"/g, (_, i: string) => deep[Number(i)]!.text());
}

const daysIn = (year: number, month: number) => new Date(Date.UTC(year, month, 0)).getUTCDate();

/** The date mutator: dates that pass a loose date-time check but are no calendar day, and years PostgreSQL or JavaScript cannot hold. */
function impossibleDate(): string {
  exercised.impossibleDates++;
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const time = pick(["T00:00:00Z", "T23:59:59.999999Z", "T12:00:00-23:59", "T12:00:00+16:00", "T12:00:00+15:59", "T24:00:00Z", "T23:59:60Z", " 10:00:00+05:30"]);
  const year = pick([0, 1, 1900, 2000, 2023, 2024, 9999]);
  const month = int(1, 12);
  return pick([
    () => `${pad(year, 4)}-${pad(month)}-${pad(daysIn(year || 4, month) + int(1, 31 - daysIn(year || 4, month) + 1))}${time}`,
    () => `${pad(year, 4)}-02-${pick(["29", "30", "31"])}${time}`,
    () => `${pad(year, 4)}-${pick(["00", "13", "99"])}-01${time}`,
    () => `${pad(year, 4)}-${pad(month)}-00${time}`,
    () => `0000-${pad(month)}-01${time}`,
    () => `${pick(["+275760", "275760", "+010000", "-000001", "99999", "+999999"])}-${pad(month)}-01T00:00:00Z`,
    () => `${pad(int(1, 9999), 4)}-${pad(month)}-${pad(int(1, daysIn(2001, month)))}${time}`,
  ])();
}

let ctx: TestContext;
const known = { version: "fuzz-1", nodes: [] as string[], agents: [] as string[], docs: [] as string[], tasks: [] as string[] };

beforeAll(async () => {
  // Rate limits on, but too high to refuse anything: every fuzzed request goes through the limiter
  // (its Redis counter and its RateLimit fields) and none is answered 429 instead of by its route.
  ctx = await createTestContext({ rateLimitEnqueue: 1_000_000, rateLimitRead: 1_000_000 });
  known.nodes = [uuid(), uuid(), uuid()];
  await postTaxonomy(ctx, known.version, [
    { node_id: known.nodes[0]!, label: "root" },
    { node_id: known.nodes[1]!, label: "a", parent_ids: [known.nodes[0]!] },
    { node_id: known.nodes[2]!, label: "b", parent_ids: [known.nodes[0]!, known.nodes[1]!] },
  ]);
  for (let i = 0; i < 3; i++) {
    const doc = await postDocument(ctx, { chunks: [`fuzz text ${i}`], mappings: [{ node_id: known.nodes[i]!, version: known.version, confidence: 0.9 }] });
    known.docs.push(doc.doc_id);
  }
  for (let i = 0; i < 2; i++) known.agents.push((await postAgent(ctx, { taxonomy_node_ids: [known.nodes[0]!], taxonomy_version: known.version })).agent_id);
  const task = await ctx.request("POST", `agents/${known.agents[0]}/coverage/refresh`);
  known.tasks.push(task.body.task_id);
});
afterAll(() => ctx.close());

/** A value for a path parameter or a uuid-formatted field: mostly a real row, sometimes not. */
function idFor(name: string): string {
  if (name === "task_id") return chance(0.7) ? pick(known.tasks) : `agent-coverage-${Bun.randomUUIDv7()}`;
  if (name === "doc_id") return chance(0.7) ? pick(known.docs) : uuid();
  if (name === "version" || name === "taxonomy_version") return chance(0.8) ? known.version : pick(["v-none", "1.0.0"]);
  if (name === "agent_id") return chance(0.8) ? pick(known.agents) : uuid();
  return chance(0.7) ? pick([...known.nodes, ...known.agents]) : uuid();
}

function stringFor(name: string, schema: Schema): string {
  if (name === "webhook_url") return pick(WEBHOOK_URLS);
  if (schema.format === "uuid") return idFor(name);
  if (schema.pattern?.startsWith("^[A-Za-z0-9._-]")) return idFor(name);
  if (schema.format === "date-time" || /date/.test(name))
    return chance(0.5) ? impossibleDate() : pick([new Date().toISOString(), "2026-01-01", "2026-13-45T99:00:00Z", "yesterday"]);
  const max = Math.min(schema.maxLength ?? 40, 40);
  const min = schema.minLength ?? 0;
  return pick(["fuzz", "machine learning", "ünïcødé", "a"]).padEnd(min, "x").slice(0, Math.max(min, max));
}

/** A value for `schema`; each level is replaced by junk with probability MUTATION_RATE. */
function generate(schema: Schema, name: string, depth = 0): unknown {
  if (chance(MUTATION_RATE)) return mutate(schema, name);
  if (schema.anyOf?.length) {
    const constants = schema.anyOf.filter((s) => "const" in s);
    if (constants.length === schema.anyOf.length) return pick(constants).const;
    const numeric = schema.anyOf.find((s) => s.type === "integer" || s.type === "number");
    return generate(numeric ?? pick(schema.anyOf), name, depth);
  }
  if ("const" in schema) return schema.const;
  switch (schema.type) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {}))
        if ((schema.required ?? []).includes(key) || chance(0.5)) out[key] = generate(sub, key, depth + 1);
      if (schema.patternProperties && depth < 3) for (let i = int(0, 3); i > 0; i--) out[`k${i}`] = pick([1, "v", null, [1], { n: i }]);
      if (name === "coverage_targets") for (const node of known.nodes) if (chance(0.5)) out[node] = int(0, 20);
      return out;
    }
    case "array": {
      const min = schema.minItems ?? 0;
      const n = Math.max(min, Math.min(schema.maxItems ?? 3, int(min, min + 3)));
      return Array.from({ length: n }, () => generate(schema.items ?? {}, name, depth + 1));
    }
    case "string":
      return stringFor(name, schema);
    case "integer":
      return int(schema.minimum ?? 0, Math.min(schema.maximum ?? 100, (schema.minimum ?? 0) + 100));
    case "number": {
      const lo = schema.minimum ?? 0;
      const hi = schema.maximum ?? lo + 100;
      return lo + random() * (hi - lo);
    }
    case "boolean":
      return chance(0.5);
    default:
      return pick(JUNK_VALUES);
  }
}

function mutate(schema: Schema, name: string): unknown {
  if (chance(0.15)) return deepValue();
  if (chance(0.05)) return impossibleDate();
  const boundary: unknown[] = [];
  if (schema.minimum !== undefined) boundary.push(schema.minimum - 1, schema.minimum - 0.5);
  if (schema.maximum !== undefined) boundary.push(schema.maximum + 1, schema.maximum + 0.5);
  if (schema.maxLength !== undefined) boundary.push("y".repeat(Math.min(schema.maxLength + 1, 200_000)));
  if (schema.minLength) boundary.push("");
  if (schema.type === "object") {
    const base = (generate({ ...schema }, name, 3) ?? {}) as Record<string, unknown>;
    const required = schema.required ?? [];
    if (required.length) boundary.push(Object.fromEntries(Object.entries(base).filter(([k]) => k !== pick(required))));
    boundary.push({ ...base, unexpected_field: 1 });
  }
  if (schema.type === "array" && schema.items) boundary.push([], [null], Array.from({ length: 3 }, () => pick(JUNK_VALUES)));
  return chance(0.5) && boundary.length ? pick(boundary) : pick(JUNK_VALUES);
}

function queryString(parameters: NonNullable<Operation["parameters"]>): string {
  const parts: string[] = [];
  for (const p of parameters.filter((x) => x.in === "query")) {
    if (!p.required && chance(0.5)) continue;
    const value = generate(p.schema, p.name);
    // A query string carries text: deep values there are kept to a length a URL can have.
    const text = typeof value === "string" ? value : toJson(value instanceof Deep ? new Deep(Math.min(value.depth, 2000), value.shape, value.leaf) : value);
    parts.push(`${encodeURIComponent(p.name)}=${encodeURIComponent(text)}`);
  }
  if (chance(0.1)) parts.push(`${pick(["unknown", "x", "__proto__"])}=${encodeURIComponent(String(pick(JUNK_VALUES)))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

function pathFor(template: string, parameters: NonNullable<Operation["parameters"]>): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const param = parameters.find((p) => p.in === "path" && p.name === name);
    if (chance(0.2)) return pick(JUNK_SEGMENTS);
    return encodeURIComponent(param ? String(idFor(name)) : "x");
  });
}

/** The operations to fuzz: the documented API under /api/v1 (health, metrics and docs take no input). */
async function operations(): Promise<[string, string, Operation][]> {
  const spec = (await ctx.request("GET", "/swagger/json", { anonymous: true })).body as { paths: Record<string, Record<string, Operation>> };
  return Object.entries(spec.paths)
    .filter(([path]) => path.startsWith("/api/v1/"))
    .flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => [method.toUpperCase(), path, op] as [string, string, Operation]));
}

test("every API operation answers generated and mutated requests without a 5xx, errors in the one shape", async () => {
  const ops = await operations();
  expect(ops.length).toBeGreaterThanOrEqual(20);
  const findings: string[] = [];
  const statuses = new Map<number, number>();
  for (const [method, template, op] of ops) {
    const parameters = op.parameters ?? [];
    const bodySchema = op.requestBody?.content["application/json"]?.schema;
    for (let i = 0; i < REQUESTS_PER_OPERATION; i++) {
      let path = pathFor(template, parameters) + queryString(parameters);
      // Deleting the shared agents would leave the other operations little to work on.
      if (method === "DELETE" && template.includes("{agent_id}") && known.agents.some((a) => path.includes(a))) path = path.replace(/agents\/[^/?]+/, `agents/${uuid()}`);
      const body = bodySchema ? generate(bodySchema, "body") : undefined;
      let res: TestResponse;
      try {
        res = await ctx.request(method, path, body === undefined ? {} : { rawBody: toJson(body) });
      } catch (error) {
        findings.push(`${method} ${path} threw ${String(error)} body=${toJson(body).slice(0, 300)}`);
        continue;
      }
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const shaped = typeof res.body?.error?.code === "string" && typeof res.body?.error?.message === "string";
      if (res.status >= 500 || (res.status >= 400 && !shaped))
        findings.push(`${method} ${path.slice(0, 300)} -> ${res.status} ${res.text.slice(0, 200)} body=${toJson(body).slice(0, 300)}`);
    }
  }
  console.log(
    `fuzz (seed ${SEED}, NODE_ENV=${process.env.NODE_ENV}): ${ops.length} operations x ${REQUESTS_PER_OPERATION} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; mutators ${JSON.stringify(exercised)}`,
  );
  expect(findings).toEqual([]);
  // The depth and date mutators took part: values past the body limit, some in the tens of thousands, and impossible dates.
  expect(exercised.deeperThan64).toBeGreaterThan(10);
  expect(exercised.deepest).toBeGreaterThanOrEqual(20_000);
  expect(exercised.impossibleDates).toBeGreaterThan(10);
  // The generator reaches the handlers, not only the validators.
  expect([...statuses.keys()].filter((s) => s < 300).length).toBeGreaterThan(1);
}, 120_000);
