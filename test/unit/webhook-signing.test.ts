import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { secretKey, signWebhook } from "../../src/webhooks/signing.ts";
import { serializePayload } from "../../src/webhooks/sender.ts";

const OLD = `whsec_${Buffer.from("old-secret-old-secret-old-secret").toString("base64")}`;
const NEW = `whsec_${Buffer.from("new-secret-new-secret-new-secret").toString("base64")}`;
const body = '{"task_id":"agent-coverage-x","status":"completed"}';
const now = Math.floor(Date.now() / 1000);

describe("webhook signing", () => {
  test("the Standard Webhooks library verifies our signature, and rejects a changed body", () => {
    const headers = signWebhook({ id: "msg_1", timestampSeconds: now, body }, [NEW]);
    expect(new Webhook(NEW).verify(body, { ...headers })).toEqual(JSON.parse(body));
    expect(() => new Webhook(NEW).verify(body.replace("completed", "failed"), { ...headers })).toThrow();
    // Our signature is exactly the library's for the same id, time and body.
    expect(headers["webhook-signature"]).toBe(new Webhook(NEW).sign("msg_1", new Date(now * 1000), body));
  });

  test("X-Agent-Signature is sha256=<hex HMAC of the body> with the first secret's key", () => {
    const headers = signWebhook({ id: "msg_1", timestampSeconds: now, body }, [NEW, OLD]);
    expect(headers["x-agent-signature"]).toBe(`sha256=${createHmac("sha256", secretKey(NEW)).update(body).digest("hex")}`);
  });

  test("with two secrets (rotation) a client holding either one verifies", () => {
    const headers = signWebhook({ id: "msg_2", timestampSeconds: now, body }, [NEW, OLD]);
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect(new Webhook(OLD).verify(body, { ...headers })).toBeTruthy();
    expect(new Webhook(NEW).verify(body, { ...headers })).toBeTruthy();
  });

  test("refuses to sign without a secret", () => {
    expect(() => signWebhook({ id: "m", timestampSeconds: now, body }, [])).toThrow("no webhook secret");
  });

  test("the payload is serialised with a fixed key order and an ISO completed_at", () => {
    const text = serializePayload({
      error: null,
      completed_at: "2026-11-28T10:00:00.5+00:00",
      status: "cancelled",
      agent_id: "a",
      task_id: "t",
    });
    expect(text).toBe('{"task_id":"t","agent_id":"a","status":"cancelled","result":null,"error":null,"completed_at":"2026-11-28T10:00:00.500Z"}');
  });
});
