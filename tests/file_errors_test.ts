/** File-system failures are told as what failed and where, with their exit code. */

import assert from "node:assert/strict";
import { describeFileError } from "../src/cli/file_errors.ts";

Deno.test("file-system failures say what and where, with a hint and their exit code", async (t) => {
  const cases: [string, Error, RegExp, number][] = [
    [
      "EPERM",
      new Deno.errors.PermissionDenied("Permission denied (os error 13): mkdir '/lms/lmstrix'"),
      /^Cannot use "\/lms\/lmstrix": permission denied$/,
      2,
    ],
    [
      "ENOSPC",
      Object.assign(new Error("No space left on device (os error 28): write '/lms/x.tmp'"), {
        code: "ENOSPC",
      }),
      /^Cannot write "\/lms\/x\.tmp": the disk is full$/,
      1,
    ],
    [
      "ENOTDIR",
      new Deno.errors.NotADirectory("Not a directory (os error 20): open '/lms/file/lmstrix'"),
      /^Cannot use "\/lms\/file\/lmstrix": a part of that path is a file/,
      2,
    ],
    [
      "EROFS",
      new Error("Read-only file system (os error 30): open '/ro/lmstrix/lmstrix.lock'"),
      /read-only/,
      2,
    ],
    [
      "a file where a directory goes",
      new Deno.errors.AlreadyExists("File exists (os error 17): mkdir '/lms/lmstrix'"),
      /a file of that name is in the way/,
      2,
    ],
  ];
  for (const [what, error, message, exitCode] of cases) {
    await t.step(what, () => {
      const problem = describeFileError(error);
      assert.ok(problem !== null);
      assert.match(problem.message, message);
      assert.ok(problem.hint.length > 0);
      assert.equal(problem.exitCode, exitCode);
    });
  }
  await t.step("anything else is not a file problem", () => {
    assert.equal(describeFileError(new Error("boom")), null);
    assert.equal(describeFileError("text"), null);
  });
});

Deno.test("a real ENOTDIR from the file system is recognised", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "x");
    const error = await Deno.mkdir(`${dir}/file/lmstrix`, { recursive: true }).then(
      () => null,
      (e) => e,
    );
    const problem = describeFileError(error);
    assert.ok(problem !== null, String(error));
    assert.match(problem.message, /file\/lmstrix|file"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
