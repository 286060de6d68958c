/**
 * The "uuid" format is checked by agentq's own regular expression (src/api/formats.ts), not by
 * the validator @elysiajs/openapi puts in TypeBox's global registry when it is imported (it
 * builds a Zod schema per value checked), and it accepts exactly what that validator accepted.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { FormatRegistry } from "@sinclair/typebox";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { isUuidFormat } from "../../src/api/formats.ts";

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

test("once the app is built, uuid values are validated by agentq's pattern, not the openapi plugin's", () => {
  expect(FormatRegistry.Get("uuid")).toBe(isUuidFormat);
});

test("a uuid path parameter accepts RFC 9562 uuids and the nil and max uuids; anything else is a 400 naming the parameter", async () => {
  const accepted = [
    "0c75f954-34b8-473b-9e8d-61df9b69a229",
    "01A231DD-9CB7-71DB-9F07-EE6D7CB82FC8",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
  ];
  for (const id of accepted) {
    const res = await ctx.request("GET", `agents/${id}`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  }
  const rejected = [
    "0c75f954-34b8-073b-9e8d-61df9b69a229", // version 0
    "0c75f954-34b8-473b-7e8d-61df9b69a229", // not the RFC variant
    "0c75f95434b8473b9e8d61df9b69a229", // no hyphens
    "urn:uuid:0c75f954-34b8-473b-9e8d-61df9b69a229",
    "0c75f954-34b8-473b-9e8d-61df9b69a22",
    "not-a-uuid",
  ];
  for (const id of rejected) {
    const res = await ctx.request("GET", `agents/${encodeURIComponent(id)}`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_error");
    expect(res.body.error.message).toContain("agent_id");
  }
});
