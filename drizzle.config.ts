import { defineConfig } from "drizzle-kit";

// drizzle-kit reads this for `bun run db:generate` and `bun run db:check`.
// The program itself applies migrations at start (src/db/migrate.ts), so no
// credentials are needed here beyond the URL used by `generate --custom`.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema.ts",
  out: "./drizzle",
  dbCredentials: { url: process.env.DATABASE_URL ?? "postgres://root@127.0.0.1:5432/agentq" },
  strict: true,
  verbose: true,
});
