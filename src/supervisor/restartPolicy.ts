/**
 * OTP-style restart intensity: at most `maxRestarts` restarts within any
 * `windowMs`; one more means something is systematically wrong, and the
 * supervisor gives up loudly instead of crash-looping.
 */
export interface RestartPolicy {
  maxRestarts: number;
  windowMs: number;
}

export class RestartBudget {
  private readonly restarts: number[] = [];

  constructor(private readonly policy: RestartPolicy) {}

  /** Records a restart at `now`; false when it exceeds the intensity limit. */
  allow(now: number): boolean {
    const since = now - this.policy.windowMs;
    while (this.restarts.length > 0 && this.restarts[0]! <= since) this.restarts.shift();
    if (this.restarts.length >= this.policy.maxRestarts) return false;
    this.restarts.push(now);
    return true;
  }

  get recent(): number {
    return this.restarts.length;
  }
}
