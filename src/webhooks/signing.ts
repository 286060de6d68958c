/**
 * Webhook signatures.
 *
 * Standard Webhooks (https://www.standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`, the
 * key being the base64 part of a `whsec_` secret. With several secrets (key
 * rotation) one signature per secret is sent, space-separated, so a client
 * holding either secret verifies.
 *
 * `X-Agent-Signature: sha256=<hex HMAC-SHA256 of the body>` keeps the original
 * plan's clients working; it is keyed with the first secret's key bytes.
 *
 * Both are computed over the exact bytes sent.
 */
import { createHmac } from "node:crypto";

export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
  "x-agent-signature": string;
}

/** The key bytes of a `whsec_<base64>` secret. */
export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.replace(/^whsec_/, ""), "base64");
}

export function signWebhook(
  message: { id: string; timestampSeconds: number; body: string },
  secrets: readonly string[],
): SignedHeaders {
  if (secrets.length === 0) throw new Error("no webhook secret configured");
  const keys = secrets.map(secretKey);
  const signed = `${message.id}.${message.timestampSeconds}.${message.body}`;
  const signatures = keys.map((key) => `v1,${createHmac("sha256", key).update(signed).digest("base64")}`);
  return {
    "webhook-id": message.id,
    "webhook-timestamp": String(message.timestampSeconds),
    "webhook-signature": signatures.join(" "),
    "x-agent-signature": `sha256=${createHmac("sha256", keys[0]!).update(message.body).digest("hex")}`,
  };
}
