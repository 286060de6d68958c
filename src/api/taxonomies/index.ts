import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors, Version } from "../common.ts";
import { ErrorBody } from "../errors.ts";
import { TaxonomyCreate, TaxonomyNodes, TaxonomyWritten } from "./model.ts";
import { listTaxonomyNodes, upsertTaxonomy } from "../../db/taxonomy.ts";
import { notFound } from "../../core/errors.ts";

export const taxonomyRoutes = (deps: AppDeps) =>
  new Elysia({ name: "agentq.taxonomies", tags: ["taxonomies"] })
    .post("/taxonomies", async ({ body, status }) => status(201, await upsertTaxonomy(deps.database.db, body.version, body.nodes)), {
      body: TaxonomyCreate,
      response: { 201: TaxonomyWritten, ...authErrors, 422: ErrorBody },
      detail: {
        summary: "Create or extend a taxonomy version",
        description:
          "Adds nodes (updating labels of existing ones) and parent edges. Parents must exist in the same version, in this request or before. Edges that would make a cycle are rejected with 422 and nothing is written.",
      },
    })
    .get(
      "/taxonomies/:version/nodes",
      async ({ params }) => {
        const nodes = await listTaxonomyNodes(deps.database.db, params.version);
        if (nodes.length === 0) throw notFound("taxonomy version", params.version);
        return { version: params.version, nodes, total: nodes.length };
      },
      {
        params: t.Object({ version: Version }),
        response: { 200: TaxonomyNodes, ...authErrors, 404: ErrorBody },
        detail: { summary: "List the nodes of a taxonomy version with their parents" },
      },
    );
