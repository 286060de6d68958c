/**
 * The "uuid" string format, validated by a plain regular expression.
 *
 * TypeBox keeps one global registry of formats, and @elysiajs/openapi 1.4 replaces entries of
 * it ("uuid", "email", "url", "date", ...) when it is imported, with functions that build a new
 * Zod schema for every value they check. Every request with a uuid in its path or body paid
 * for that: in `bun run bench engine`'s end-to-end run it was about a tenth of the main
 * thread's CPU (Zod's constructors and clones). Of the replaced formats our schemas use only
 * "uuid" ("date-time" is Elysia's own and untouched); it gets back a regular expression, the
 * very pattern the replaced validator used (RFC 9562 versions 1 to 8 with the RFC variant, plus
 * the nil and max UUIDs), so exactly the same values pass.
 */
import { FormatRegistry } from "@sinclair/typebox";

const UUID = /^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$/;

export const isUuidFormat = (value: string): boolean => UUID.test(value);

/** Call after @elysiajs/openapi has been imported (createApp does). Idempotent. */
export function installStringFormats(): void {
  FormatRegistry.Set("uuid", isUuidFormat);
}
