/**
 * Browser assets, all served from our own origin (no CDN, works with no internet): files of
 * pinned npm packages (Swagger UI from swagger-ui-dist) and the dashboard's client
 * (src/dashboard/client), bundled by Bun.build from its npm dependencies the first time a
 * page needs it.
 *
 * Every asset is served at a URL carrying a digest of its bytes (`<base>/<digest>/<name>`),
 * so browsers may keep it for a year (`immutable`) and a new release is fetched at once.
 * Gzip is computed once, when the asset is added.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

export interface Asset {
  name: string;
  /** Path to link from a page: `<base>/<digest>/<name>`. */
  url: string;
  digest: string;
  contentType: string;
  body: Uint8Array;
  gzip: Uint8Array;
}

const CONTENT_TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  png: "image/png",
  svg: "image/svg+xml",
};

export const contentTypeOf = (name: string) => CONTENT_TYPES[name.slice(name.lastIndexOf(".") + 1)] ?? "application/octet-stream";

/** A set of assets under one URL prefix. */
export class AssetSet {
  private readonly byName = new Map<string, Asset>();

  constructor(readonly base: string) {}

  add(name: string, body: Uint8Array): Asset {
    const digest = new Bun.CryptoHasher("sha256").update(body).digest("hex").slice(0, 16);
    const asset: Asset = {
      name,
      url: `${this.base}/${digest}/${name}`,
      digest,
      contentType: contentTypeOf(name),
      body,
      gzip: Bun.gzipSync(body as Uint8Array<ArrayBuffer>),
    };
    this.byName.set(name, asset);
    return asset;
  }

  get(name: string): Asset {
    const asset = this.byName.get(name);
    if (!asset) throw new Error(`no asset ${name} under ${this.base}`);
    return asset;
  }

  /** The response for `<base>/<digest>/<name>`, or null when no such asset (an old digest included). */
  respond(digest: string, name: string, request: Request): Response | null {
    const asset = this.byName.get(name);
    if (!asset || asset.digest !== digest) return null;
    const gzip = /\bgzip\b/.test(request.headers.get("accept-encoding") ?? "");
    const headers: Record<string, string> = {
      "content-type": asset.contentType,
      "cache-control": "public, max-age=31536000, immutable",
      etag: `"${asset.digest}"`,
      vary: "accept-encoding",
    };
    if (gzip) headers["content-encoding"] = "gzip";
    if (request.headers.get("if-none-match") === headers.etag) return new Response(null, { status: 304, headers });
    return new Response(gzip ? asset.gzip : asset.body, { headers });
  }
}

/** Directory of an installed npm package (resolved like an import, so the lockfile's version). */
export function packageDir(name: string): string {
  return dirname(Bun.resolveSync(`${name}/package.json`, import.meta.dir));
}

export function readPackageFile(name: string, file: string): Uint8Array {
  return new Uint8Array(readFileSync(join(packageDir(name), file)));
}

export const CLIENT_DIR = join(import.meta.dir, "client");

/**
 * Bundles the client entry points (file names under src/dashboard/client) for the browser:
 * minified, one file per entry plus the CSS its imports pull in (named after the entry).
 */
export async function bundleClient(entries: readonly string[]): Promise<Map<string, Uint8Array>> {
  const result = await Bun.build({
    entrypoints: entries.map((e) => join(CLIENT_DIR, e)),
    target: "browser",
    format: "esm",
    minify: true,
    naming: "[name].[ext]",
    define: { "process.env.NODE_ENV": JSON.stringify("production") },
  });
  if (!result.success) throw new AggregateError(result.logs, "the dashboard client does not build");
  const files = new Map<string, Uint8Array>();
  for (const output of result.outputs) files.set(output.path.replace(/^\.\//, ""), new Uint8Array(await output.arrayBuffer()));
  return files;
}
