/**
 * Dashboard sessions, stored server side in Redis (so a sign-out ends a session for good, and
 * every API process behind a load balancer shares them, with no signing secret to configure):
 * one JSON value per session, expiring with it (PX), under QueueKeys.dashboardSession.
 *
 * The browser holds only the token (an HttpOnly cookie); Redis holds only its hash, so a
 * copy of Redis cannot be replayed as a cookie. A session never holds the API key it was
 * opened with: it names the key (the id of a stored key, the hash of a static one) and is
 * refused as soon as that key is revoked or no longer configured. Losing Redis data signs
 * everyone out, nothing more.
 */
import type { RedisClient } from "../queue/redisClient.ts";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apiKeys } from "../db/schema.ts";
import type { QueueKeys } from "../queue/keys.ts";

/** Which API key a session was opened with, without the key. */
export type Principal = { kind: "static"; keyHash: string } | { kind: "stored"; keyId: string };

export interface Session {
  principal: Principal;
  /** Sent back by the page on every change (X-CSRF-Token header or _csrf field). */
  csrfToken: string;
  createdAt: string;
  expiresAt: string;
}

/** 256 random bits, base64url: 43 characters. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
export const newToken = () => randomBytes(32).toString("base64url");
export const isTokenShaped = (token: string) => TOKEN_PATTERN.test(token);

const sha256Hex = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/** Same length and same bytes, in constant time. */
export function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Stored keys are `aq_<key id hex>_<secret>` (src/auth/apiKeys.ts). */
const STORED_KEY = /^aq_([0-9a-f]{32})_[A-Za-z0-9_-]{43}$/;

/** The principal of a key the verifier accepted: a configured key, else a stored one. */
export function principalOf(key: string, staticKeys: readonly string[]): Principal {
  const keyHash = sha256Hex(key);
  if (staticKeys.some((k) => tokensEqual(sha256Hex(k), keyHash))) return { kind: "static", keyHash };
  const hex = STORED_KEY.exec(key)![1]!;
  return { kind: "stored", keyId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}` };
}

/** Whether the key behind a session still opens the API: still configured, or stored and not revoked. */
export async function principalActive(db: Db, principal: Principal, staticKeys: readonly string[]): Promise<boolean> {
  if (principal.kind === "static") return staticKeys.some((k) => tokensEqual(sha256Hex(k), principal.keyHash));
  const [row] = await db
    .select({ keyId: apiKeys.keyId })
    .from(apiKeys)
    .where(and(eq(apiKeys.keyId, principal.keyId), isNull(apiKeys.revokedAt)))
    .limit(1);
  return row !== undefined;
}

export class SessionStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<QueueKeys, "dashboardSession">,
    readonly ttlMs: number,
  ) {}

  private key(token: string) {
    return this.keys.dashboardSession(sha256Hex(token));
  }

  async create(principal: Principal, now = Date.now()): Promise<{ token: string; session: Session }> {
    const token = newToken();
    const session: Session = {
      principal,
      csrfToken: newToken(),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.ttlMs).toISOString(),
    };
    await this.redis.set(this.key(token), JSON.stringify(session), "PX", this.ttlMs);
    return { token, session };
  }

  /** The live session of a token, or null (unknown, expired, signed out, or not token-shaped). */
  async get(token: string): Promise<Session | null> {
    if (!isTokenShaped(token)) return null;
    const raw = await this.redis.get(this.key(token));
    if (raw === null) return null;
    const session = JSON.parse(raw) as Session;
    return Date.parse(session.expiresAt) > Date.now() ? session : null;
  }

  async destroy(token: string): Promise<void> {
    if (isTokenShaped(token)) await this.redis.del(this.key(token));
  }
}
