/**
 * Redis Cluster: every key and channel name of a deployment must hash to ONE slot (so the
 * multi-key pops, the Lua scripts and the pipelines run on one node). Checked with Redis's own
 * slot function (test/helpers/hashSlot.ts) over every name queueKeys gives out; a name added
 * to QueueKeys without the `{coverage}` tag fails here.
 */
import { describe, expect, test } from "bun:test";
import { queueKeys, type QueueKeys } from "../../src/queue/keys.ts";
import { ConfigSchema } from "../../src/config.ts";
import { crc16, hashedPart, hashSlot } from "../helpers/hashSlot.ts";

/** Every name of `keys` except the cleanup glob: strings, arrays of them, and what the key builders return. */
function everyName(keys: QueueKeys): Record<string, string> {
  const names: Record<string, string> = {};
  for (const [field, value] of Object.entries(keys) as [keyof QueueKeys, unknown][]) {
    if (field === "pattern") continue;
    if (typeof value === "string") names[field] = value;
    else if (Array.isArray(value)) value.forEach((v, i) => (names[`${field}[${i}]`] = String(v)));
    else if (typeof value === "function") names[`${field}(…)`] = (value as (arg: string) => string)("high");
    else throw new Error(`QueueKeys.${field} is neither a name nor a name builder: add it to this test`);
  }
  return names;
}

describe("Redis Cluster hash slots", () => {
  test("the slot function is Redis's: CRC16/XMODEM check value and slots Redis documents", () => {
    expect(crc16(new TextEncoder().encode("123456789"))).toBe(0x31c3);
    expect(hashSlot("foo")).toBe(12182);
    // What CLUSTER KEYSLOT answers on a real cluster (test/e2e/redis-cluster.test.ts asks it too).
    expect(hashSlot("{coverage}")).toBe(9008);
    expect(hashSlot("{user1000}.following")).toBe(hashSlot("user1000"));
    // An empty tag is no tag; only the first tag counts.
    expect(hashedPart("foo{}{bar}")).toBe("foo{}{bar}");
    expect(hashedPart("foo{{bar}}zap")).toBe("{bar");
    expect(hashedPart("a{b}{c}")).toBe("b");
  });

  for (const prefix of ["agentq", "prod:eu-1", "agentq-test:0a1b2c3d"]) {
    test(`every key and channel of prefix ${prefix} is in the {coverage} slot`, () => {
      const names = everyName(queueKeys(prefix));
      expect(Object.keys(names).length).toBeGreaterThanOrEqual(11);
      const slot = hashSlot("{coverage}");
      const outside = Object.entries(names).filter(([, name]) => !name.startsWith(`${prefix}:{coverage}:`) || hashSlot(name) !== slot);
      expect(outside).toEqual([]);
    });
  }

  test("a prefix cannot carry a hash tag of its own (it would move the deployment's keys to its slot)", () => {
    const pattern = new RegExp(ConfigSchema.properties.redisPrefix.pattern!);
    expect(pattern.test("prod:eu-1")).toBe(true);
    expect(pattern.test("{tenant}")).toBe(false);
    expect(pattern.test("a}b")).toBe(false);
  });

  test("the cleanup pattern covers every name", () => {
    const keys = queueKeys("agentq");
    const glob = new RegExp(`^${keys.pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
    for (const name of Object.values(everyName(keys))) expect(glob.test(name)).toBe(true);
  });
});
