/**
 * Schema-driven fuzzing of every API operation, through the real app, PostgreSQL and Redis.
 * Requests are generated from the served OpenAPI document (so a new route is fuzzed without
 * touching this file): mostly well-formed values pointing at real rows, with random
 * mutations at every level (wrong types, out-of-range numbers, overlong and NUL-bearing
 * strings, missing required and unknown fields, junk path segments and query values). The
 * invariant: never a 5xx, and every error in the one error shape. The generator is seeded,
 * and a failure prints the request, so any finding can be replayed.
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

let ctx: TestContext;
const known = { version: "fuzz-1", nodes: [] as string[], agents: [] as string[], docs: [] as string[], tasks: [] as string[] };

beforeAll(async () => {
  ctx = await createTestContext();
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
  if (schema.format === "date-time" || /date/.test(name)) return pick([new Date().toISOString(), "2026-01-01", "2026-13-45T99:00:00Z", "yesterday"]);
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
    const text = typeof value === "string" ? value : JSON.stringify(value);
    parts.push(`${encodeURIComponent(p.name)}=${encodeURIComponent(text ?? "")}`);
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
        res = await ctx.request(method, path, body === undefined ? {} : { rawBody: JSON.stringify(body) ?? "null" });
      } catch (error) {
        findings.push(`${method} ${path} threw ${String(error)} body=${JSON.stringify(body)?.slice(0, 300)}`);
        continue;
      }
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const shaped = typeof res.body?.error?.code === "string" && typeof res.body?.error?.message === "string";
      if (res.status >= 500 || (res.status >= 400 && !shaped))
        findings.push(`${method} ${path} -> ${res.status} ${res.text.slice(0, 200)} body=${JSON.stringify(body)?.slice(0, 300)}`);
    }
  }
  console.log(`fuzz (seed ${SEED}): ${ops.length} operations x ${REQUESTS_PER_OPERATION} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  expect(findings).toEqual([]);
  // The generator reaches the handlers, not only the validators.
  expect([...statuses.keys()].filter((s) => s < 300).length).toBeGreaterThan(1);
}, 120_000);
