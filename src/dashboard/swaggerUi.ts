/**
 * Swagger UI at /swagger, working with no internet: its page loads Swagger UI's files from
 * the pinned swagger-ui-dist package and our own start script, all from our origin, under a
 * Content-Security-Policy that allows nothing else. (The OpenAPI plugin's own page loads
 * swagger-ui-dist@latest from unpkg with an inline script: blank behind a firewall, and an
 * unpinned third-party script on our origin.) The OpenAPI document stays the plugin's, at
 * /swagger/json.
 */
import { Elysia, t } from "elysia";
import { escapeHtml, htmlPage } from "./html.ts";
import { SWAGGER_ASSETS_BASE, uiAssets, type UiAssets } from "./uiAssets.ts";

export interface SwaggerPageOptions {
  /** Path of the page. */
  path: string;
  /** Path of the OpenAPI JSON document. */
  specPath: string;
  title: string;
  /** Where the header links to the dashboard, when it is on. */
  dashboardPath?: string;
}

export function swaggerPage(assets: UiAssets, options: SwaggerPageOptions): string {
  const { swagger } = assets;
  const dashboardLink = options.dashboardPath ? `<a href="${escapeHtml(options.dashboardPath)}">Dashboard</a>` : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)} API</title>
<link rel="icon" type="image/png" href="${swagger.get("favicon-32x32.png").url}">
<link rel="stylesheet" href="${swagger.get("swagger-ui.css").url}">
<link rel="stylesheet" href="${swagger.get("swagger.css").url}">
</head>
<body>
<header class="agentq-docs-header"><strong>${escapeHtml(options.title)}</strong><span>API reference (Swagger UI ${escapeHtml(assets.swaggerUiVersion)})</span>${dashboardLink}</header>
<div id="swagger-ui" data-spec="${escapeHtml(options.specPath)}"></div>
<script defer src="${swagger.get("swagger-ui-bundle.js").url}"></script>
<script defer src="${swagger.get("swagger.js").url}"></script>
</body>
</html>
`;
}

export const swaggerUi = (options: SwaggerPageOptions) =>
  new Elysia({ name: "agentq.swagger-ui" })
    .get(options.path, async () => htmlPage(swaggerPage(await uiAssets(), options)), { detail: { hide: true } })
    .get(
      `${SWAGGER_ASSETS_BASE}/:digest/:name`,
      async ({ params, request, status }) =>
        (await uiAssets()).swagger.respond(params.digest, params.name, request) ?? status(404, { error: { code: "not_found", message: "no such asset" } }),
      { params: t.Object({ digest: t.String(), name: t.String() }), detail: { hide: true } },
    );
