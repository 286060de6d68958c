/**
 * JSON body parsing with a size and a nesting limit, so oversized, deeply nested and
 * malformed bodies end as 413 and 400 in the one error shape instead of whatever the
 * runtime says, and before anything recurses over them (JSON.parse, schema validation,
 * Elysia's error formatting).
 *
 * Bun's own body limit is set far above ours (src/api/app.ts, listenOptions) so that every
 * 413 comes from here: a declared Content-Length is refused before reading, and a streamed
 * body is read only up to the limit, then the stream is cancelled.
 */
import { Elysia } from "elysia";
import { AppError } from "../core/errors.ts";
import { jsonNestingDepth, truncate } from "./jsonLimits.ts";

const isJson = (contentType: string) => /^application\/([a-z0-9.+-]*\+)?json\b/i.test(contentType);

export interface BodyLimits {
  /** Largest body in bytes. */
  maxBodyBytes: number;
  /** Deepest nesting of arrays and objects. */
  maxJsonDepth: number;
}

/** The body's bytes, or `tooLarge()` thrown as soon as more than `max` bytes have arrived. */
async function readAtMost(request: Request, max: number, tooLarge: () => AppError): Promise<Uint8Array> {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0]!;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}

export function jsonBody({ maxBodyBytes, maxJsonDepth }: BodyLimits) {
  const tooLarge = () =>
    new AppError("payload_too_large", `request body exceeds ${maxBodyBytes} bytes`, { max_bytes: maxBodyBytes });
  return new Elysia({ name: "agentq.json-body", seed: { maxBodyBytes, maxJsonDepth } })
    .onRequest(({ request }) => {
      // Refuse early when the client announces a large body; chunked bodies are measured while read.
      const declared = Number(request.headers.get("content-length") ?? "0");
      if (declared > maxBodyBytes) throw tooLarge();
    })
    .onParse({ as: "global" }, async ({ request, contentType }) => {
      const bytes = await readAtMost(request, maxBodyBytes, tooLarge);
      if (bytes.byteLength === 0) return undefined;
      if (contentType && !isJson(contentType))
        throw new AppError("unsupported_media_type", `content-type ${truncate(contentType, 200)} is not supported; send application/json`);
      const depth = jsonNestingDepth(bytes, maxJsonDepth);
      if (depth > maxJsonDepth) {
        const message = `nested deeper than ${maxJsonDepth} levels of arrays and objects`;
        throw new AppError("validation_error", `invalid body: ${message}`, {
          on: "body",
          max_depth: maxJsonDepth,
          issues: [{ path: "/", message }],
        });
      }
      const text = new TextDecoder().decode(bytes);
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        throw new AppError("malformed_json", `the request body is not valid JSON: ${truncate((error as Error).message, 200)}`);
      }
    });
}
