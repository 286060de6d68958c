/** Builders for corpus data sent through the API, and for task rows written directly. */
import { randomUUID } from "node:crypto";
import type { TestContext } from "./app.ts";
import type { NewTask } from "../../src/db/tasks/enqueue.ts";
import { newTaskId } from "../../src/core/tasks.ts";

export const uuid = () => randomUUID();

export interface NodeSpec {
  node_id: string;
  label: string;
  parent_ids?: string[];
}

export async function postTaxonomy(ctx: TestContext, version: string, nodes: NodeSpec[]) {
  const res = await ctx.request("POST", "taxonomies", { body: { version, nodes } });
  if (res.status !== 201) throw new Error(`taxonomy setup failed: ${res.status} ${res.text}`);
  return res.body;
}

export async function postDocument(
  ctx: TestContext,
  doc: { doc_id?: string; title?: string; chunks?: string[]; mappings: { node_id: string; version: string; confidence: number }[] },
) {
  const res = await ctx.request("POST", "documents", {
    body: {
      ...(doc.doc_id ? { doc_id: doc.doc_id } : {}),
      title: doc.title ?? "a document",
      chunks: (doc.chunks ?? ["some text"]).map((text) => ({ text })),
      mappings: doc.mappings,
    },
  });
  if (res.status !== 201) throw new Error(`document setup failed: ${res.status} ${res.text}`);
  return res.body as { doc_id: string };
}

export async function postAgent(ctx: TestContext, body: Record<string, unknown>) {
  const res = await ctx.request("POST", "agents/from-taxonomy", { body: { name: "agent", ...body } });
  if (res.status !== 201) throw new Error(`agent setup failed: ${res.status} ${res.text}`);
  return res.body as { agent_id: string };
}

/** A task row for the statements of src/db/tasks/: medium priority, no webhook, 60 s, 2 attempts, not deduplicated. */
export const taskInput = (agentId: string, over: Partial<NewTask> = {}): NewTask => ({
  taskId: newTaskId(),
  agentId,
  priority: "medium",
  webhookUrl: null,
  timeoutMs: 60_000,
  maxAttempts: 2,
  dedupe: false,
  ...over,
});
