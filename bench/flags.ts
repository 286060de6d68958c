/**
 * Command-line flags of the bench commands: integer flags (`--name N`, each with its bounds)
 * from a table, and the others (switches, lists) by a callback.
 */

/** flag -> [the option it sets, its minimum, its maximum]. */
export type IntFlags<K extends string> = Record<string, readonly [K, number, number]>;

/**
 * `other` handles a flag the table does not name: it returns how many arguments it took (1 for a
 * switch, 2 with a value), 0 when it does not know the flag either, or an error message.
 * Returns null, or the message to print for a bad command line.
 */
export function parseFlags<K extends string>(
  args: readonly string[],
  ints: IntFlags<K>,
  setInt: (key: K, value: number) => void,
  other: (flag: string, value: string | undefined) => number | string = () => 0,
): string | null {
  for (let i = 0; i < args.length; ) {
    const flag = args[i]!;
    const int = ints[flag];
    if (int) {
      const [key, min, max] = int;
      const n = Number(args[i + 1]);
      if (!Number.isInteger(n) || n < min || n > max) return `${flag} takes an integer from ${min} to ${max}`;
      setInt(key, n);
      i += 2;
      continue;
    }
    const took = other(flag, args[i + 1]);
    if (typeof took === "string") return took;
    if (took === 0) return `unknown flag: ${flag}`;
    i += took;
  }
  return null;
}
