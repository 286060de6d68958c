/**
 * Every way agentq is started runs it with NODE_ENV=production. Elysia reads NODE_ENV once,
 * when it is imported, and outside production its ValidationError pretty-prints the whole
 * rejected value (a 40 KB body nested 20,000 deep took 10 s and 3.8 GB there). And CI runs
 * the hostile-input tests in that mode as well as in the default one.
 */
import { describe, expect, test } from "bun:test";
import { readYaml, repoPath } from "./support.ts";

const text = (path: string) => Bun.file(repoPath(path)).text();

describe("NODE_ENV=production is set", () => {
  test("by the start commands", async () => {
    const { scripts } = (await Bun.file(repoPath("package.json")).json()) as { scripts: Record<string, string> };
    for (const name of ["start", "api", "supervisor"]) expect({ name, script: scripts[name] }).toEqual({ name, script: `NODE_ENV=production bun src/cli/${name}.ts` });
  });

  test("by both systemd units", async () => {
    for (const unit of ["agentq-api.service", "agentq-supervisor.service"])
      expect({ unit, set: (await text(`ops/systemd/${unit}`)).split("\n").includes("Environment=NODE_ENV=production") }).toEqual({ unit, set: true });
  });

  test("by the Dockerfile's runtime stage and by docker-compose for the API and the supervisor", async () => {
    const dockerfile = await text("Dockerfile");
    const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    expect(runtimeStage).toContain("\nENV NODE_ENV=production\n");
    const compose = await readYaml<{ services: Record<string, { environment?: Record<string, string> }> }>("docker-compose.yml");
    for (const name of ["api", "supervisor"]) expect({ name, env: compose.services[name]!.environment?.NODE_ENV }).toEqual({ name, env: "production" });
  });
});

test("CI runs the bad-input and fuzz tests in production mode before the main test run", async () => {
  const lines = (await text(".ci/run")).split("\n").map((line) => line.trim());
  const production = lines.findIndex((line) => line.startsWith("NODE_ENV=production bun test "));
  const main = lines.indexOf("bun run test:coverage");
  expect(production).toBeGreaterThan(-1);
  expect(lines[production]).toContain("test/integration/bad-input.test.ts");
  expect(lines[production]).toContain("test/integration/fuzz.test.ts");
  expect(production).toBeLessThan(main);
});
