/**
 * The supervisor's clock: one time-limit timer per running task, and one
 * grace timer per task asked to stop (past it, its thread is terminated).
 * Keyed by lease token: the same task id may come back under a new lease.
 */
export class TaskClock {
  private readonly limits = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly graces = new Map<string, ReturnType<typeof setTimeout>>();

  startLimit(leaseToken: string, ms: number, onExpired: () => void): void {
    this.limits.set(leaseToken, setTimeout(onExpired, ms));
  }

  startGrace(leaseToken: string, ms: number, onExpired: () => void): void {
    clearTimeout(this.graces.get(leaseToken));
    this.graces.set(leaseToken, setTimeout(onExpired, ms));
  }

  clear(leaseToken: string): void {
    clearTimeout(this.limits.get(leaseToken));
    clearTimeout(this.graces.get(leaseToken));
    this.limits.delete(leaseToken);
    this.graces.delete(leaseToken);
  }

  clearAll(): void {
    for (const token of [...this.limits.keys(), ...this.graces.keys()]) this.clear(token);
  }
}
