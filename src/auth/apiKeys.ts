/**
 * API keys. A key is `aq_<key id hex>_<secret>` with 256 bits of secret, so a
 * single fast SHA-256 is a safe hash (no per-request key derivation needed).
 * The id part finds the row; the hash comparison is constant time.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apiKeys } from "../db/schema.ts";

const KEY_PATTERN = /^aq_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

export const hashKey = (key: string): Buffer => createHash("sha256").update(key, "utf8").digest();

const idToUuid = (hex: string) =>
  `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;

export interface CreatedKey {
  keyId: string;
  name: string;
  key: string;
}

export async function createApiKey(db: Db, name: string): Promise<CreatedKey> {
  const keyId = randomUUID();
  const key = `aq_${keyId.replaceAll("-", "")}_${randomBytes(32).toString("base64url")}`;
  await db.insert(apiKeys).values({ keyId, name, keyHash: hashKey(key).toString("hex") });
  return { keyId, name, key };
}

/** Revokes by key id or by name; returns how many keys were revoked. */
export async function revokeApiKey(db: Db, idOrName: string): Promise<number> {
  const byId = /^[0-9a-f-]{36}$/i.test(idOrName);
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(byId ? eq(apiKeys.keyId, idOrName) : eq(apiKeys.name, idOrName), isNull(apiKeys.revokedAt)))
    .returning({ keyId: apiKeys.keyId });
  return rows.length;
}

export async function listApiKeys(db: Db) {
  return db
    .select({ keyId: apiKeys.keyId, name: apiKeys.name, createdAt: apiKeys.createdAt, revokedAt: apiKeys.revokedAt })
    .from(apiKeys)
    .orderBy(apiKeys.createdAt);
}

export interface KeyVerifier {
  verify(key: string | undefined | null): Promise<boolean>;
}

/** Accepts the configured static keys and the stored, unrevoked ones. */
export function createKeyVerifier(db: Db, staticKeys: readonly string[]): KeyVerifier {
  const staticHashes = staticKeys.map(hashKey);
  return {
    async verify(key) {
      if (!key || key.length > 256) return false;
      const hash = hashKey(key);
      let staticMatch = false;
      for (const h of staticHashes) staticMatch = timingSafeEqual(h, hash) || staticMatch;
      if (staticMatch) return true;
      const parsed = KEY_PATTERN.exec(key);
      if (!parsed) return false;
      const [row] = await db
        .select({ keyHash: apiKeys.keyHash })
        .from(apiKeys)
        .where(and(eq(apiKeys.keyId, idToUuid(parsed[1]!)), isNull(apiKeys.revokedAt)))
        .limit(1);
      if (!row) return false;
      return timingSafeEqual(Buffer.from(row.keyHash, "hex"), hash);
    },
  };
}
