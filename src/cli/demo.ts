/**
 * `bun run demo`: loads a small taxonomy, documents and an agent into the
 * configured database, creates an API key, and prints curl commands to try.
 * Safe to run twice: it reuses what it created before.
 */
import { sql } from "drizzle-orm";
import { loadConfig } from "../config.ts";
import { prepareDatabase } from "../db/migrate.ts";
import { openDatabase } from "../db/client.ts";
import { upsertTaxonomy } from "../db/taxonomy.ts";
import { insertDocuments, type DocumentInput } from "../db/documents.ts";
import { createAgent, listAgents } from "../db/agents.ts";
import { createApiKey } from "../auth/apiKeys.ts";
import { runCli } from "./run.ts";

const VERSION = "demo-1.0";
const id = (n: number) => `00000000-0000-4000-8000-${n.toString().padStart(12, "0")}`;

// A small DAG: "Deep learning" sits under both "Machine learning" and "Neural computation".
const NODES = [
  { node_id: id(1), label: "Artificial intelligence" },
  { node_id: id(2), label: "Machine learning", parent_ids: [id(1)] },
  { node_id: id(3), label: "Neural computation", parent_ids: [id(1)] },
  { node_id: id(4), label: "Deep learning", parent_ids: [id(2), id(3)] },
  { node_id: id(5), label: "Reinforcement learning", parent_ids: [id(2)] },
  { node_id: id(6), label: "Knowledge representation", parent_ids: [id(1)] },
];

const doc = (n: number, title: string, texts: string[], mappings: [number, number][]): DocumentInput => ({
  doc_id: id(100 + n),
  title,
  chunks: texts.map((text) => ({ text })),
  mappings: mappings.map(([node, confidence]) => ({ node_id: id(node), version: VERSION, confidence })),
});

const DOCUMENTS = [
  doc(1, "A survey of machine learning", ["Machine learning builds models from data.", "Supervised learning needs labels."], [[2, 0.95]]),
  doc(2, "Backpropagation explained", ["Gradient descent trains deep neural networks.", "Backpropagation computes gradients layer by layer."], [[4, 0.9], [3, 0.8]]),
  doc(3, "Convolutional networks", ["Convolutions share weights across an image."], [[4, 0.88]]),
  doc(4, "Q-learning from scratch", ["Agents learn a value function from rewards."], [[5, 0.75]]),
  doc(5, "Ontologies and knowledge graphs", ["Knowledge graphs link entities with typed relations."], [[6, 0.65]]),
];

await runCli(async () => {
  const config = loadConfig();
  await prepareDatabase(config.databaseUrl);
  const database = openDatabase(config.databaseUrl, { max: 2, applicationName: "agentq-demo" });
  try {
    const db = database.db;
    await upsertTaxonomy(db, VERSION, NODES);
    const existing = await db.execute<{ doc_id: string }>(sql`select doc_id from documents where doc_id in (${sql.join(DOCUMENTS.map((d) => sql`${d.doc_id}::uuid`), sql`, `)})`);
    const have = new Set(existing.map((r) => r.doc_id));
    const missing = DOCUMENTS.filter((d) => !have.has(d.doc_id!));
    if (missing.length > 0) await insertDocuments(db, missing);
    const name = "Demo ML agent";
    const found = (await listAgents(db, { q: name, max_results: 1 })).agents[0];
    const agent =
      found ??
      (await createAgent(db, {
        name,
        taxonomy_node_ids: [id(2), id(3)],
        taxonomy_version: VERSION,
        scope_description: "Machine learning and neural computation",
        coverage_targets: { [id(4)]: 4 },
      }));
    const key = await createApiKey(db, `demo-${new Date().toISOString()}`);
    const base = `http://localhost:${config.port}/api/v1`;
    const h = `-H 'X-API-Key: ${key.key}'`;
    console.log(`Demo data loaded: taxonomy ${VERSION} (${NODES.length} nodes), ${DOCUMENTS.length} documents, agent ${agent.agent_id}.
A new API key was created for you (shown once): ${key.key}

Start the service (bun run start), then try:

  curl -s ${h} ${base}/taxonomies/${VERSION}/nodes
  curl -s ${h} ${base}/agents/${agent.agent_id}
  curl -s ${h} ${base}/agents/${agent.agent_id}/coverage
  curl -s ${h} '${base}/agents/${agent.agent_id}/gaps?threshold=0.5'
  curl -s ${h} -H 'content-type: application/json' -d '{"query":"gradient descent"}' ${base}/agents/${agent.agent_id}/query
  curl -s ${h} '${base}/agents/search?q=demo'

A background refresh (202 with the task; then poll it, see the history, or cancel it):

  curl -s ${h} -X POST -H 'content-type: application/json' -d '{"priority":"high"}' ${base}/agents/${agent.agent_id}/coverage/refresh
  curl -s ${h} ${base}/tasks/<task_id from the answer above>
  curl -s ${h} ${base}/agents/${agent.agent_id}/coverage/history
  curl -si ${h} -X DELETE ${base}/tasks/<task_id>

API docs: http://localhost:${config.port}/swagger`);
  } finally {
    await database.close();
  }
});
