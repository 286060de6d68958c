/** JSON logs to stdout (pino). */
import pino, { type Logger } from "pino";

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { service: "agentq", ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
