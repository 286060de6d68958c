import { describe, expect, test } from "bun:test";
import { jsonNestingDepth, preview, truncate, valueDepth } from "../../src/api/jsonLimits.ts";
import { timestampProblem } from "../../src/api/timestamps.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const nested = (depth: number, leaf = "") => "[".repeat(depth) + leaf + "]".repeat(depth);

describe("jsonNestingDepth", () => {
  test("counts arrays and objects, not scalars", () => {
    expect(jsonNestingDepth(bytes("1"), 64)).toBe(0);
    expect(jsonNestingDepth(bytes('"x"'), 64)).toBe(0);
    expect(jsonNestingDepth(bytes("{}"), 64)).toBe(1);
    expect(jsonNestingDepth(bytes('{"a":[1,{"b":[]}],"c":{}}'), 64)).toBe(4);
    expect(jsonNestingDepth(bytes(nested(64)), 64)).toBe(64);
  });

  test("stops counting one past the limit, so a 50,000-deep body costs one short scan", () => {
    expect(jsonNestingDepth(bytes(nested(65)), 64)).toBe(65);
    expect(jsonNestingDepth(bytes(nested(50_000)), 64)).toBe(65);
  });

  test("ignores brackets inside strings, escaped quotes included, and multi-byte characters", () => {
    expect(jsonNestingDepth(bytes(JSON.stringify({ text: "[".repeat(10_000) })), 64)).toBe(1);
    expect(jsonNestingDepth(bytes(JSON.stringify({ text: 'a\\"[[[[' + '"{{{{' })), 2)).toBe(1);
    expect(jsonNestingDepth(bytes(JSON.stringify(["ünïcødé [ 🙂 {", ["x"]])), 64)).toBe(2);
    // A backslash escaping a backslash does not escape the closing quote.
    expect(jsonNestingDepth(bytes('["\\\\",[[]]]'), 64)).toBe(3);
  });

  test("agrees with valueDepth on parsed values", () => {
    for (const text of ["[]", '{"a":{"b":{"c":[1,2,{"d":null}]}}}', nested(30, "1"), '[[],[[]],[[[]]]]'])
      expect(jsonNestingDepth(bytes(text), 100)).toBe(valueDepth(JSON.parse(text), 100));
  });
});

describe("valueDepth", () => {
  test("is iterative: a value 100,000 levels deep is measured, up to the limit", () => {
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(valueDepth(deep, 32)).toBe(33);
    expect(valueDepth({ a: 1 }, 32)).toBe(1);
    expect(valueDepth("text", 32)).toBe(0);
  });
});

describe("preview", () => {
  test("renders small values as JSON", () => {
    expect(preview({ a: [1, "x", null, true], b: {} })).toBe('{"a":[1,"x",null,true],"b":{}}');
    expect(preview(undefined)).toBe("undefined");
    expect(preview(12n)).toBe("12n");
  });

  test("is bounded in depth and length whatever the value", () => {
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(preview(deep)).toBe("[[[[…]]]]");
    const long = preview(Array.from({ length: 100_000 }, (_, i) => i));
    expect(long.length).toBeLessThanOrEqual(121);
    expect(long.endsWith("…")).toBe(true);
    expect(preview("x".repeat(1_000_000)).length).toBeLessThanOrEqual(121);
    const wide = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`key${i}`, i]));
    expect(preview(wide).length).toBeLessThanOrEqual(121);
    expect(preview(deep, { maxLength: 20, maxDepth: 1 })).toBe("[[…]]");
  });

  test("a cyclic value is cut by the depth limit", () => {
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    expect(preview(cyclic)).toBe('{"name":"loop","self":{"name":"loop","self":{"name":"loop","self":{…}}}}');
  });
});

test("truncate says how much it cut", () => {
  expect(truncate("abc", 5)).toBe("abc");
  expect(truncate("abcdefgh", 3)).toBe("abc… (5 more characters)");
});

describe("timestampProblem", () => {
  test("accepts RFC 3339 instants PostgreSQL reads as the same instant", () => {
    for (const ok of [
      "2024-02-29T00:00:00Z",
      "2000-02-29T12:30:00+01:00",
      "0001-01-01T00:00:00Z",
      "9999-12-31T23:59:59.999999Z",
      "2024-03-01T10:00Z",
      "2024-03-01t10:00:00z",
      "2024-03-01 10:00:00-15:59",
      "2024-03-01T10:00:00.123456789+15:00",
    ])
      expect({ ok, problem: timestampProblem(ok) }).toEqual({ ok, problem: null });
  });

  test("refuses impossible calendar dates, years outside 0001-9999, bad times and offsets past ±15:59", () => {
    const cases: [string, string][] = [
      ["2024-02-30T00:00:00Z", "2024-02-30 is not a calendar date"],
      ["2023-02-29T00:00:00Z", "2023-02-29 is not a calendar date"],
      ["1900-02-29T00:00:00Z", "1900-02-29 is not a calendar date"],
      ["2024-06-31T00:00:00Z", "2024-06-31 is not a calendar date"],
      ["2024-04-00T00:00:00Z", "2024-04-00 is not a calendar date"],
      ["2024-13-01T00:00:00Z", "month 13 does not exist"],
      ["2024-00-01T00:00:00Z", "month 00 does not exist"],
      ["0000-01-01T00:00:00Z", "year must be 0001 to 9999"],
      ["+275760-09-13T00:00:00Z", "RFC 3339"],
      ["275760-01-01T00:00:00Z", "RFC 3339"],
      ["-000001-01-01T00:00:00Z", "RFC 3339"],
      ["2024-01-01T24:00:00Z", "24:00:00 is not a time of day"],
      ["2024-01-01T23:60:00Z", "is not a time of day"],
      ["2024-01-01T23:59:60Z", "is not a time of day"],
      ["2024-01-01T00:00:00-23:59", "time zone offset -23:59 is out of range"],
      ["2024-01-01T00:00:00+16:00", "time zone offset +16:00 is out of range"],
      ["2024-01-01T00:00:00+01:60", "time zone offset +01:60 is out of range"],
      ["2024-01-01T00:00:00", "RFC 3339"],
      ["2024-01-01", "RFC 3339"],
      ["Mon Jan 01 2024 00:00:00 GMT+0000 (UTC)", "RFC 3339"],
      ["yesterday", "RFC 3339"],
    ];
    for (const [text, expected] of cases) {
      const problem = timestampProblem(text);
      expect({ text, problem: problem?.includes(expected) ? expected : problem }).toEqual({ text, problem: expected });
    }
  });
});
