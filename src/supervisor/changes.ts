/**
 * Waiting on state without polling: whoever changes the state calls
 * `changed()`, and `until` re-checks its condition only then (or gives up at
 * its deadline). Drain uses it to wait for `drained` messages and for tasks to
 * end.
 */
export class Changes {
  private readonly waiters = new Set<() => void>();

  changed(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves true once `condition()` holds, false if `timeoutMs` passes first. */
  until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
    });
  }
}
