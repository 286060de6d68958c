/**
 * API keys. A key is `aq_<key id hex>_<secret>` with 256 bits of secret, so a
 * single fast SHA-256 is a safe hash (no per-request key derivation needed).
 * The id part finds the row; the hash comparison is constant time.
 *
 * Verification is served from a short-lived in-process cache (createKeyVerifier
 * with `cache`), kept honest by revocation messages over Redis pub/sub.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { and, eq, inArray, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apiKeys } from "../db/schema.ts";
import type { KeyRevocations, RevocationListener } from "../queue/keyRevocations.ts";

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

/** The revoke is committed in PostgreSQL, but the API processes could not be told (Redis unreachable). */
export class RevocationNotPublishedError extends Error {
  constructor(
    readonly revoked: number,
    override readonly cause: unknown,
  ) {
    super(
      `revoked ${revoked} key${revoked === 1 ? "" : "s"}, but the API processes could not be told (Redis: ${cause instanceof Error ? cause.message : String(cause)}); ` +
        "each stops accepting it when its cache entry expires (AGENTQ_API_KEY_CACHE_TTL_MS)",
    );
    this.name = "RevocationNotPublishedError";
  }
}

/**
 * Revokes by key id or by name; returns how many keys were revoked. Once the
 * UPDATE has committed, the ids are published so every API process drops them
 * from its cache (src/queue/keyRevocations.ts); if that fails, throws
 * RevocationNotPublishedError (the revoke itself stands).
 */
export async function revokeApiKey(db: Db, idOrName: string, revocations: Pick<KeyRevocations, "publish">): Promise<number> {
  const byId = /^[0-9a-f-]{36}$/i.test(idOrName);
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(byId ? eq(apiKeys.keyId, idOrName) : eq(apiKeys.name, idOrName), isNull(apiKeys.revokedAt)))
    .returning({ keyId: apiKeys.keyId });
  if (rows.length > 0) {
    try {
      await revocations.publish(rows.map((r) => r.keyId));
    } catch (error) {
      throw new RevocationNotPublishedError(rows.length, error);
    }
  }
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

export interface KeyCacheOptions {
  /** Tells the cache about revokes made anywhere (Redis pub/sub). */
  revocations: Pick<KeyRevocations, "listen">;
  /** How long a verified key is trusted without asking PostgreSQL again (0: not cached). */
  ttlMs: number;
  /** How long a refused key is refused without asking PostgreSQL again (0: not cached). */
  negativeTtlMs: number;
  /** Entries kept of each kind (accepted, refused); the oldest go first. Default 5000. */
  maxEntries?: number;
}

export interface CachedKeyVerifier extends KeyVerifier {
  /** Stops listening to revocations. */
  close(): void;
}

/**
 * Accepts the configured static keys and the stored, unrevoked ones.
 *
 * Without `cache`, every stored key is looked up in PostgreSQL. With it, a
 * verified key is trusted for `ttlMs` and a refused one refused for
 * `negativeTtlMs`, both by the SHA-256 of the key (the key itself is never
 * kept). A revoke message evicts a key at once; while the revocation
 * subscription is down, a revoked key may be accepted until its entry
 * expires (at most `ttlMs`). Misses are looked up in batches: one query in
 * flight per process, and the misses that arrive meanwhile form the next one,
 * so a flood of unknown keys cannot turn into a query per request.
 */
export function createKeyVerifier(db: Db, staticKeys: readonly string[]): KeyVerifier;
export function createKeyVerifier(db: Db, staticKeys: readonly string[], cache: KeyCacheOptions): CachedKeyVerifier;
export function createKeyVerifier(db: Db, staticKeys: readonly string[], cache?: KeyCacheOptions): KeyVerifier | CachedKeyVerifier {
  const staticHashes = staticKeys.map(hashKey);
  const isStatic = (hash: Buffer) => {
    let match = false;
    for (const h of staticHashes) match = timingSafeEqual(h, hash) || match;
    return match;
  };
  if (!cache) {
    return {
      async verify(key) {
        if (!key || key.length > 256) return false;
        const hash = hashKey(key);
        if (isStatic(hash)) return true;
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
  const keyCache = new KeyCache(db, cache);
  const stopListening = cache.revocations.listen(keyCache);
  return {
    async verify(key) {
      if (!key || key.length > 256) return false;
      const hash = hashKey(key);
      if (isStatic(hash)) return true;
      const parsed = KEY_PATTERN.exec(key);
      if (!parsed) return false;
      return keyCache.verify(idToUuid(parsed[1]!), hash);
    },
    close: stopListening,
  };
}

/** Most key ids in one lookup query. */
const LOOKUP_BATCH = 500;

interface Lookup {
  keyId: string;
  hash: Buffer;
  hashHex: string;
  resolve(valid: boolean): void;
  reject(error: unknown): void;
}

/** The cache of stored keys behind createKeyVerifier, keyed by the key's hash (hex). */
class KeyCache implements RevocationListener {
  /** hash -> key id and expiry, oldest (or least recently used) first. */
  private readonly accepted = new Map<string, { keyId: string; expires: number }>();
  /** hash -> expiry, oldest first. */
  private readonly refused = new Map<string, number>();
  /** One lookup per hash at a time: concurrent requests with one key share it. */
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private queue: Lookup[] = [];
  private running = false;
  /** Bumped on every revocation: a lookup that overlapped one is answered but not cached. */
  private epoch = 0;
  private readonly maxEntries: number;

  constructor(
    private readonly db: Db,
    private readonly options: KeyCacheOptions,
  ) {
    this.maxEntries = options.maxEntries ?? 5000;
  }

  verify(keyId: string, hash: Buffer): Promise<boolean> {
    const hashHex = hash.toString("hex");
    const now = Date.now();
    const hit = this.accepted.get(hashHex);
    if (hit) {
      this.accepted.delete(hashHex);
      if (hit.expires > now) {
        this.accepted.set(hashHex, hit); // most recently used last: a flood of other keys evicts it last
        return Promise.resolve(true);
      }
    }
    const refusedUntil = this.refused.get(hashHex);
    if (refusedUntil !== undefined) {
      if (refusedUntil > now) return Promise.resolve(false);
      this.refused.delete(hashHex);
    }
    let pending = this.inFlight.get(hashHex);
    if (!pending) {
      pending = new Promise<boolean>((resolve, reject) => this.queue.push({ keyId, hash, hashHex, resolve, reject })).finally(() =>
        this.inFlight.delete(hashHex),
      );
      this.inFlight.set(hashHex, pending);
      if (!this.running) void this.drain();
    }
    return pending;
  }

  revoked(keyIds: readonly string[]): void {
    this.epoch++;
    const ids = new Set(keyIds);
    for (const [hashHex, entry] of this.accepted) if (ids.has(entry.keyId)) this.accepted.delete(hashHex);
  }

  reset(): void {
    this.epoch++;
    this.accepted.clear();
  }

  /** Group commit of lookups: runs while misses wait, one query at a time. */
  private async drain() {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, LOOKUP_BATCH);
        const epoch = this.epoch;
        let rows: { keyId: string; keyHash: string }[];
        try {
          rows = await this.db
            .select({ keyId: apiKeys.keyId, keyHash: apiKeys.keyHash })
            .from(apiKeys)
            .where(and(inArray(apiKeys.keyId, [...new Set(batch.map((l) => l.keyId))]), isNull(apiKeys.revokedAt)));
        } catch (error) {
          for (const l of batch) l.reject(error);
          continue;
        }
        const stored = new Map(rows.map((r) => [r.keyId, Buffer.from(r.keyHash, "hex")]));
        const now = Date.now();
        for (const l of batch) {
          const h = stored.get(l.keyId);
          const valid = h !== undefined && h.length === l.hash.length && timingSafeEqual(h, l.hash);
          if (epoch === this.epoch) this.remember(l, valid, now);
          l.resolve(valid);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private remember(l: Lookup, valid: boolean, now: number) {
    const { ttlMs, negativeTtlMs } = this.options;
    if (valid && ttlMs > 0) {
      this.accepted.set(l.hashHex, { keyId: l.keyId, expires: now + ttlMs });
      evictOldest(this.accepted, this.maxEntries);
    } else if (!valid && negativeTtlMs > 0) {
      this.refused.set(l.hashHex, now + negativeTtlMs);
      evictOldest(this.refused, this.maxEntries);
    }
  }
}

function evictOldest(map: Map<string, unknown>, max: number) {
  for (const key of map.keys()) {
    if (map.size <= max) return;
    map.delete(key);
  }
}
