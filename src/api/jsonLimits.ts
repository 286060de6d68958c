/**
 * Bounds on the shape of JSON input (OWASP API4, unrestricted resource consumption).
 *
 * Nesting is the cheap way to make a small body expensive: JSON.parse, schema validation,
 * error formatting, JSON.stringify and PostgreSQL's jsonb parser all recurse once per level,
 * and pretty-printing a value n levels deep writes O(n²) indentation. So the raw body is
 * measured before anything recurses over it, by one linear pass over its bytes, and values
 * that are stored as they come (the agents' jsonb configs) get a depth and size limit of
 * their own. Every function here is iterative: none of them can overflow the stack.
 */

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const OPEN_BRACKET = 0x5b; // [
const CLOSE_BRACKET = 0x5d; // ]
const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACE = 0x7d; // }

/**
 * The deepest nesting of arrays and objects in JSON text, counted up to `limit + 1` (the
 * scan stops there). `{}` is 1, `[[1]]` is 2, a scalar 0. Brackets inside strings do not
 * count. Works on UTF-8 bytes: multi-byte sequences never contain ASCII bytes, so no
 * decoding is needed. Malformed text gets some number; JSON.parse refuses it afterwards.
 */
export function jsonNestingDepth(bytes: Uint8Array, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_BRACKET || byte === OPEN_BRACE) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (byte === CLOSE_BRACKET || byte === CLOSE_BRACE) depth--;
  }
  return deepest;
}

/** The nesting depth of a parsed value (same counting as jsonNestingDepth), up to `limit + 1`. */
export function valueDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== "object") continue;
    if (depth > deepest) {
      deepest = depth;
      if (deepest > limit) return deepest;
    }
    for (const child of Object.values(current)) if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
  }
  return deepest;
}

export interface PreviewLimits {
  /** Longest text returned, in characters (an ellipsis marks the cut). */
  maxLength: number;
  /** Levels of arrays and objects shown; deeper ones become `[…]` and `{…}`. */
  maxDepth: number;
}

export const PREVIEW_LIMITS: PreviewLimits = { maxLength: 120, maxDepth: 3 };

/**
 * A JSON-like rendering of any value for an error message or a log line, bounded in length
 * and depth whatever the value: at most `maxDepth` levels and `maxLength` characters, and
 * the work done is bounded by those too (it never walks more than it prints).
 */
export function preview(value: unknown, limits: PreviewLimits = PREVIEW_LIMITS): string {
  const out: string[] = [];
  let length = 0;
  const full = () => length >= limits.maxLength;
  const emit = (text: string) => {
    out.push(text);
    length += text.length;
  };
  // Work items: a value at a depth, or a literal piece of punctuation.
  const work: ({ value: unknown; depth: number } | string)[] = [{ value, depth: 0 }];
  while (work.length > 0 && !full()) {
    const item = work.pop()!;
    if (typeof item === "string") {
      emit(item);
      continue;
    }
    const v = item.value;
    if (v === undefined) emit("undefined");
    else if (typeof v === "string") emit(JSON.stringify(v.length > limits.maxLength ? v.slice(0, limits.maxLength) : v));
    else if (typeof v === "bigint") emit(`${v}n`);
    else if (v === null || typeof v !== "object") emit(String(v));
    else if (Array.isArray(v)) {
      if (item.depth >= limits.maxDepth) emit(v.length === 0 ? "[]" : "[…]");
      else {
        // Only as many elements as could still be printed.
        const shown = v.slice(0, limits.maxLength - length);
        work.push("]");
        if (shown.length < v.length) work.push(",…");
        for (let i = shown.length - 1; i >= 0; i--) {
          work.push({ value: shown[i], depth: item.depth + 1 });
          if (i > 0) work.push(",");
        }
        emit("[");
      }
    } else {
      const keys: string[] = [];
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        if (keys.length >= limits.maxLength - length) break;
        keys.push(key);
      }
      if (item.depth >= limits.maxDepth) emit(keys.length === 0 ? "{}" : "{…}");
      else {
        work.push("}");
        for (let i = keys.length - 1; i >= 0; i--) {
          work.push({ value: (v as Record<string, unknown>)[keys[i]!], depth: item.depth + 1 });
          work.push(`${JSON.stringify(keys[i]!.slice(0, limits.maxLength))}:`);
          if (i > 0) work.push(",");
        }
        emit("{");
      }
    }
  }
  const text = out.join("");
  return text.length > limits.maxLength || work.length > 0 ? `${text.slice(0, limits.maxLength)}…` : text;
}

/** Cuts text to `max` characters, saying how much was left out. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}
