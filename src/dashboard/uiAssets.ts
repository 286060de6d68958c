/**
 * The assets of /swagger and /dashboard, made once per process (every app of the process
 * shares them): Swagger UI's files from the pinned swagger-ui-dist package, and the client
 * bundle built from src/dashboard/client. Building takes a few hundred milliseconds, so it
 * starts on first use (or at start-up: serveApi warms it) and is awaited by the pages.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AssetSet, bundleClient, CLIENT_DIR, readPackageFile } from "./assets.ts";

export const SWAGGER_ASSETS_BASE = "/swagger/assets";
export const DASHBOARD_ASSETS_BASE = "/dashboard/assets";

/** The files of swagger-ui-dist the page uses. */
const SWAGGER_UI_FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"] as const;

/** Entry points under src/dashboard/client; each gives `<name>.js` and, if it imports CSS, `<name>.css`. */
export const CLIENT_ENTRIES = ["swagger.ts", "dashboard.tsx"] as const;

export interface UiAssets {
  swagger: AssetSet;
  dashboard: AssetSet;
  /** The swagger-ui-dist version the files came from. */
  swaggerUiVersion: string;
}

async function build(): Promise<UiAssets> {
  const swagger = new AssetSet(SWAGGER_ASSETS_BASE);
  const dashboard = new AssetSet(DASHBOARD_ASSETS_BASE);
  for (const file of SWAGGER_UI_FILES) swagger.add(file, readPackageFile("swagger-ui-dist", file));
  const client = await bundleClient(CLIENT_ENTRIES);
  for (const [name, bytes] of client) (name.startsWith("swagger.") ? swagger : dashboard).add(name, bytes);
  dashboard.add("favicon.svg", new Uint8Array(readFileSync(join(CLIENT_DIR, "favicon.svg"))));
  const { version } = JSON.parse(new TextDecoder().decode(readPackageFile("swagger-ui-dist", "package.json"))) as { version: string };
  return { swagger, dashboard, swaggerUiVersion: version };
}

let assets: Promise<UiAssets> | undefined;

/** The process's assets, built on the first call; a failed build is retried on the next call. */
export function uiAssets(): Promise<UiAssets> {
  assets ??= build().catch((error) => {
    assets = undefined;
    throw error;
  });
  return assets;
}
