/**
 * A pass that runs again a fixed pause after the previous one ended (never
 * two at once, no catch-up burst after a slow pass), until stopped. The
 * reconciler and the scheduler run on it; `stop` waits for a pass in progress.
 * The pass handles its own errors: one that throws is logged by its owner
 * and the next one runs as usual.
 */
export class PeriodicPass {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> | null = null;
  private stopped = true;

  constructor(
    /** The pause after a pass (read each time: tests change the config between passes). */
    private readonly pauseMs: () => number,
    private readonly pass: () => Promise<void>,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  private schedule(delay: number) {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.inFlight = this.pass()
        .catch(() => {})
        .finally(() => {
          this.inFlight = null;
          this.schedule(this.pauseMs());
        });
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.inFlight;
  }
}
