/**
 * A program that uses the library as another project would, run by tests/library_test.ts with
 * fewer permissions than lmstrix needs: prints the error class and message of `scan()` or
 * `list()` as one JSON line.
 *
 * Usage: deno run [flags] tests/support/library_permissions.ts <scan|list> <home> <server>
 *
 * @module
 */

import { LMStrix } from "../../mod.ts";

const [method, lmstudioDir, server] = Deno.args;
const lmstrix = new LMStrix({ lmstudioDir, server });
try {
  const result = method === "scan" ? await lmstrix.scan() : await lmstrix.list();
  console.log(JSON.stringify({ ok: result }));
} catch (error) {
  const { name, message } = error as Error;
  console.log(JSON.stringify({ error: { class: error?.constructor?.name, name, message } }));
}
