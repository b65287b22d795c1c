/**
 * Tests for src/paths.ts: finding the LM Studio home and naming LMStrix's files.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "../src/errors.ts";
import {
  checkLmstudioHome,
  fileSafeModelId,
  legacyFileSafeModelId,
  lmstrixPaths,
  logFileFor,
  resolveLmstudioDir,
  type ResolveLmstudioDirOptions,
} from "../src/paths.ts";

/** Options for a fake machine where only `dirs` exist and `files` hold the given text. */
function machine(
  dirs: string[],
  files: Record<string, string> = {},
  env: Record<string, string> = {},
): ResolveLmstudioDirOptions {
  return {
    env: (name) => env[name],
    homeDir: "/home/u",
    platform: "linux",
    exists: (path) => dirs.includes(path),
    readTextFile: (path) => files[path],
    cwd: () => "/work",
  };
}

Deno.test("resolveLmstudioDir picks the LM Studio home in the contract's order", async (t) => {
  const all = [
    "/data/lms",
    "/home/u/.lmstudio",
    "/home/u/.cache/lm-studio",
    "/home/u/Library/Application Support/LM Studio",
    "/Users/Shared/lmstudio",
  ];
  const pointer = { "/home/u/.lmstudio-home-pointer": "/data/lms\n" };

  await t.step("the --lmstudio-dir flag wins over everything", () => {
    const opts = machine(all, pointer, { LMSTRIX_LMSTUDIO_DIR: "/env/dir" });
    assert.equal(resolveLmstudioDir({ ...opts, flag: "/flag/dir" }), "/flag/dir");
  });

  await t.step("the environment variable comes next", () => {
    const opts = machine(all, pointer, { LMSTRIX_LMSTUDIO_DIR: "/env/dir" });
    assert.equal(resolveLmstudioDir(opts), "/env/dir");
  });

  await t.step("an explicit directory is used even when it does not exist yet", () => {
    assert.equal(resolveLmstudioDir({ ...machine([]), flag: "/nowhere" }), "/nowhere");
  });

  await t.step("relative and ~ paths are made absolute", () => {
    assert.equal(resolveLmstudioDir({ ...machine([]), flag: "rel/dir" }), "/work/rel/dir");
    assert.equal(resolveLmstudioDir({ ...machine([]), flag: "~/lms" }), "/home/u/lms");
  });

  await t.step("an empty variable is ignored, an empty flag refused", () => {
    const opts = machine(["/home/u/.lmstudio"], {}, { LMSTRIX_LMSTUDIO_DIR: " " });
    assert.equal(resolveLmstudioDir(opts), "/home/u/.lmstudio");
    assert.throws(() => resolveLmstudioDir({ ...opts, flag: "" }), UsageError);
  });

  await t.step("a relative flag under deno task is taken from the caller's directory", () => {
    const { cwd: _cwd, ...opts } = machine([], {}, { INIT_CWD: "/home/u/projects" });
    assert.equal(resolveLmstudioDir({ ...opts, flag: "lms" }), "/home/u/projects/lms");
  });

  await t.step("the pointer file's first line, trimmed, comes first", () => {
    assert.equal(resolveLmstudioDir(machine(all, pointer)), "/data/lms");
  });

  await t.step("a pointer to a directory that does not exist is skipped", () => {
    const opts = machine(all.slice(1), pointer);
    assert.equal(resolveLmstudioDir(opts), "/home/u/.lmstudio");
  });

  const rest = all.slice(1);
  for (let i = 0; i < rest.length; i++) {
    await t.step(`without the ones before it, "${rest[i]}" is chosen`, () => {
      assert.equal(resolveLmstudioDir(machine(rest.slice(i))), rest[i]);
    });
  }

  await t.step("when nothing exists it defaults to ~/.lmstudio", () => {
    assert.equal(resolveLmstudioDir(machine([])), "/home/u/.lmstudio");
  });

  await t.step("on Windows it looks in %USERPROFILE%\\.lmstudio", () => {
    const opts: ResolveLmstudioDirOptions = {
      env: (name) => (name === "USERPROFILE" ? "C:\\Users\\u" : undefined),
      platform: "windows",
      exists: (path) => path === "C:\\Users\\u\\.lmstudio",
      readTextFile: () => undefined,
    };
    assert.equal(resolveLmstudioDir(opts), "C:\\Users\\u\\.lmstudio");
  });

  await t.step("without a home directory it asks for --lmstudio-dir", () => {
    const opts = { ...machine([]), homeDir: undefined, env: () => undefined };
    assert.throws(() => resolveLmstudioDir(opts), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.hint ?? "", /--lmstudio-dir/);
      return true;
    });
  });

  await t.step("the production defaults read the real environment", () => {
    const dir = Deno.makeTempDirSync();
    const before = Deno.env.get("LMSTRIX_LMSTUDIO_DIR");
    try {
      Deno.env.set("LMSTRIX_LMSTUDIO_DIR", dir);
      assert.equal(resolveLmstudioDir(), dir);
    } finally {
      if (before === undefined) Deno.env.delete("LMSTRIX_LMSTUDIO_DIR");
      else Deno.env.set("LMSTRIX_LMSTUDIO_DIR", before);
      Deno.removeSync(dir);
    }
  });
});

Deno.test("lmstrixPaths puts LMStrix's files under <lmstudio-dir>/lmstrix", () => {
  const paths = lmstrixPaths("/lms");
  assert.deepEqual(paths, {
    lmstudioDir: "/lms",
    root: join("/lms", "lmstrix"),
    registry: join("/lms", "lmstrix", "models.json"),
    lock: join("/lms", "lmstrix", "lmstrix.lock"),
    logsDir: join("/lms", "lmstrix", "context_tests"),
    lmsm: join("/lms", "lmsm.json"),
  });
});

Deno.test("logFileFor names a file-safe log per model and keeps distinct ids distinct", async (t) => {
  const paths = lmstrixPaths("/lms");

  await t.step("a plain id is used as it is", () => {
    assert.equal(
      logFileFor(paths, "qwen3-8b_v1.5"),
      join(paths.logsDir, "qwen3-8b_v1.5_context_test.log"),
    );
  });

  await t.step("unsafe characters become _ and a hash is appended", () => {
    const name = fileSafeModelId("lmstudio-community/Qwen 3:8b@q4");
    assert.match(name, /^lmstudio-community_Qwen_3_8b_q4~[0-9a-f]{32}$/);
  });

  await t.step("an id named like another's old hashed name gets a name of its own", () => {
    // Older versions gave `a/b` the name `a_b-3a8e75c1`, which is also a valid model id.
    const twin = legacyFileSafeModelId("a/b");
    assert.equal(twin, "a_b-3a8e75c1");
    const names = ["a/b", twin, "a_b"].map((id) => fileSafeModelId(id));
    assert.equal(new Set(names).size, 3);
    assert.ok(!names.includes(twin), "no new name is an old hashed one");
  });

  await t.step("the name never leaves the logs directory", () => {
    for (const id of ["../../etc/passwd", "..", ".", "a/../../b", "C:\\x"]) {
      const file = logFileFor(paths, id);
      assert.equal(join(file, ".."), paths.logsDir, id);
      assert.match(file.slice(paths.logsDir.length + 1), /^[A-Za-z0-9._~-]+$/, id);
    }
  });

  await t.step("ids that sanitize alike, or differ only in case, get different names", () => {
    const ids = ["a/b", "a:b", "a_b", "a b", "Model", "model", "MODEL", ""];
    const names = ids.map((id) => fileSafeModelId(id));
    assert.equal(new Set(names.map((n) => n.toLowerCase())).size, ids.length);
  });

  await t.step("very long ids are cut to a safe length and stay distinct", () => {
    const a = fileSafeModelId("x".repeat(300) + "a");
    const b = fileSafeModelId("x".repeat(300) + "b");
    assert.ok(a.length < 200);
    assert.notEqual(a, b);
  });

  await t.step("the same id always gives the same name", () => {
    assert.equal(fileSafeModelId("org/Model Q4"), fileSafeModelId("org/Model Q4"));
  });
});

Deno.test("an LM Studio home named explicitly must exist and look like one", async (t) => {
  const fake = (kind: "directory" | "other" | "missing", names: string[] = []) => ({
    kind: () => kind,
    entries: () => names,
  });
  const cases: [string, ReturnType<typeof fake>, RegExp | null][] = [
    ["a missing directory", fake("missing"), /does not exist/],
    ["a file", fake("other"), /is not a directory/],
    ["a directory of something else", fake("directory", ["src", "README.md"]), /does not look/],
    ["an empty directory", fake("directory"), null],
    ["LM Studio's home", fake("directory", ["models", ".internal", "settings.json"]), null],
    ["a home lmstrix used", fake("directory", ["lmstrix"]), null],
  ];
  for (const [what, options, problem] of cases) {
    await t.step(what, () => {
      if (problem === null) return checkLmstudioHome("/x", options);
      assert.throws(() => checkLmstudioHome("/x", options), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, problem);
        assert.match(error.hint ?? "", /--lmstudio-dir/);
        return true;
      });
    });
  }
  await t.step("on the real file system", () => {
    const dir = Deno.makeTempDirSync();
    try {
      checkLmstudioHome(dir);
      Deno.writeTextFileSync(`${dir}/file`, "x");
      assert.throws(() => checkLmstudioHome(`${dir}/file`), /is not a directory/);
      assert.throws(() => checkLmstudioHome(`${dir}/file/below`), /does not exist/);
      assert.throws(() => checkLmstudioHome(`${dir}/nope`), /does not exist/);
      assert.throws(() => checkLmstudioHome(dir), /does not look/);
      Deno.mkdirSync(`${dir}/models`);
      checkLmstudioHome(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
});
