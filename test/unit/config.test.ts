import { describe, expect, test } from "bun:test";
import { ConfigError, DEFAULTS, loadConfig } from "../../src/config.ts";

describe("loadConfig", () => {
  test("uses the documented defaults for an empty environment", () => {
    const config = loadConfig({});
    expect(config).toEqual(DEFAULTS);
    expect(config.databaseUrl).toBe("postgres://root@127.0.0.1:5432/agentq");
    expect(config.redisUrl).toBe("redis://127.0.0.1:6379/0");
    expect(config.port).toBe(3000);
  });

  test("reads every variable and splits AGENTQ_API_KEYS on commas", () => {
    const config = loadConfig({
      DATABASE_URL: "postgresql://u@db:5432/x",
      REDIS_URL: "rediss://r:6380/1",
      PORT: "8080",
      AGENTQ_API_KEYS: " key-aaaaaaaaaaaaaaaa , key-bbbbbbbbbbbbbbbb ,",
      AGENTQ_CONFIDENCE_THRESHOLD: "0.5",
      AGENTQ_DEFAULT_TARGET_DOCUMENTS: "20",
      AGENTQ_MAX_BODY_BYTES: "4096",
      AGENTQ_BULK_MAX_DOCUMENTS: "10",
      LOG_LEVEL: "debug",
      WORKERS: "4",
    });
    expect(config.apiKeys).toEqual(["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"]);
    expect(config.port).toBe(8080);
    expect(config.confidenceThreshold).toBe(0.5);
    expect(config.defaultTargetDocuments).toBe(20);
    expect(config.maxBodyBytes).toBe(4096);
    expect(config.bulkMaxDocuments).toBe(10);
    expect(config.logLevel).toBe("debug");
    expect(config.workers).toBe(4);
  });

  test("the claim cooldown is off by default, read from AGENTQ_CLAIM_COOLDOWN_MS, and bounded to 0..1000 ms", () => {
    expect(loadConfig({}).claimCooldownMs).toBe(0);
    expect(loadConfig({ AGENTQ_CLAIM_COOLDOWN_MS: "25" }).claimCooldownMs).toBe(25);
    for (const bad of ["-1", "1001", "soon"]) expect(() => loadConfig({ AGENTQ_CLAIM_COOLDOWN_MS: bad })).toThrow("AGENTQ_CLAIM_COOLDOWN_MS");
  });

  test("names every invalid variable in one error", () => {
    let error: unknown;
    try {
      loadConfig({ PORT: "eighty", AGENTQ_CONFIDENCE_THRESHOLD: "1.5", DATABASE_URL: "mysql://x" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain("PORT");
    expect(message).toContain("AGENTQ_CONFIDENCE_THRESHOLD");
    expect(message).toContain("DATABASE_URL");
    expect((error as ConfigError).problems.length).toBeGreaterThanOrEqual(3);
  });

  test("rejects API keys too short to be secrets", () => {
    expect(() => loadConfig({ AGENTQ_API_KEYS: "short" })).toThrow(ConfigError);
  });

  test("rate limits: per-key requests per window, 0 turns a policy off, bad values are named at start", () => {
    expect(loadConfig({})).toMatchObject({ rateLimitEnqueue: 600, rateLimitRead: 1200, rateLimitWindowS: 60 });
    expect(loadConfig({ AGENTQ_RATE_LIMIT_ENQUEUE: "0", AGENTQ_RATE_LIMIT_READ: "50", AGENTQ_RATE_LIMIT_WINDOW_S: "1" })).toMatchObject({
      rateLimitEnqueue: 0,
      rateLimitRead: 50,
      rateLimitWindowS: 1,
    });
    let error: unknown;
    try {
      loadConfig({ AGENTQ_RATE_LIMIT_ENQUEUE: "-1", AGENTQ_RATE_LIMIT_READ: "lots", AGENTQ_RATE_LIMIT_WINDOW_S: "0" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    expect(problems).toContain("AGENTQ_RATE_LIMIT_ENQUEUE: Expected an integer from 0 to 1000000 (got -1)");
    expect(problems).toContain('AGENTQ_RATE_LIMIT_READ: Expected an integer from 0 to 1000000 (got "lots")');
    expect(problems).toContain("AGENTQ_RATE_LIMIT_WINDOW_S: Expected an integer from 1 to 86400 (got 0)");
    expect(() => loadConfig({ AGENTQ_RATE_LIMIT_READ: "2.5" })).toThrow("AGENTQ_RATE_LIMIT_READ");
  });

  test("overrides win over the environment", () => {
    expect(loadConfig({ WORKERS: "3" }, { workers: 7 }).workers).toBe(7);
  });
});
