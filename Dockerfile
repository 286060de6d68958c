# agentq image: one image for the API (`bun run api`) and the supervisor
# (`bun run supervisor --workers N`); docker-compose.yml picks the command.
# Only runtime dependencies are installed: devDependencies (TypeScript, drizzle-kit,
# bullmq for benchmarks, test helpers) are not needed to run, since Bun runs the
# TypeScript sources directly and the migrations are committed SQL under drizzle/.
FROM oven/bun:1.4.5 AS deps
WORKDIR /app
# patches/: the postgres.js fix that `bun install` applies (patchedDependencies in package.json).
COPY package.json bun.lock ./
COPY patches ./patches
RUN bun install --frozen-lockfile --production

FROM oven/bun:1.4.5
WORKDIR /app
# Production mode (also set by `bun run api|supervisor|start`): Elysia reads NODE_ENV once,
# when it loads, and only outside production pretty-prints every rejected value.
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bun.lock tsconfig.json ./
COPY drizzle ./drizzle
COPY src ./src
COPY workers ./workers
# The image's unprivileged user; nothing under /app needs to be writable.
USER bun
# 3000: API; 9464: a standalone supervisor's /metrics and /healthz.
EXPOSE 3000 9464
CMD ["bun", "run", "api"]
