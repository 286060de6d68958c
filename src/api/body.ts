/**
 * JSON body parsing with a size limit, so oversized and malformed bodies end as
 * 413 and 400 in the one error shape instead of whatever the runtime says.
 */
import { Elysia } from "elysia";
import { AppError } from "../core/errors.ts";

const isJson = (contentType: string) => /^application\/([a-z0-9.+-]*\+)?json\b/i.test(contentType);

export function jsonBody(maxBodyBytes: number) {
  const tooLarge = () =>
    new AppError("payload_too_large", `request body exceeds ${maxBodyBytes} bytes`, { max_bytes: maxBodyBytes });
  return new Elysia({ name: "agentq.json-body", seed: maxBodyBytes })
    .onRequest(({ request }) => {
      // Refuse early when the client announces a large body; chunked bodies are measured while parsed.
      const declared = Number(request.headers.get("content-length") ?? "0");
      if (declared > maxBodyBytes) throw tooLarge();
    })
    .onParse({ as: "global" }, async ({ request, contentType }) => {
      const bytes = await request.arrayBuffer();
      if (bytes.byteLength > maxBodyBytes) throw tooLarge();
      if (bytes.byteLength === 0) return undefined;
      if (contentType && !isJson(contentType))
        throw new AppError("unsupported_media_type", `content-type ${contentType} is not supported; send application/json`);
      const text = new TextDecoder().decode(bytes);
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        throw new AppError("malformed_json", `the request body is not valid JSON: ${(error as Error).message}`);
      }
    });
}
