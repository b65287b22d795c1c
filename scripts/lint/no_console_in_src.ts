/**
 * A `deno lint` plugin: no `console.*` in `src/`. All printing of the product goes through
 * `src/output.ts` (so that `--json`, `--quiet` and colour rules hold everywhere); developer
 * scripts and tests may print as they like, so the rule looks at `src/` only.
 *
 * @module
 */

/** Files the rule leaves alone: the output module is where printing belongs. */
const ALLOWED = /[\\/]src[\\/]output\.ts$/;

const plugin: Deno.lint.Plugin = {
  name: "lmstrix",
  rules: {
    "no-console-in-src": {
      create(context) {
        if (!/[\\/]src[\\/]/.test(context.filename) || ALLOWED.test(context.filename)) return {};
        return {
          'MemberExpression[object.type="Identifier"][object.name="console"]'(
            node: Deno.lint.MemberExpression,
          ) {
            context.report({
              node,
              message: "Print through src/output.ts, not console",
              hint: "take an Output (or an onEvent callback) and write through it",
            });
          },
        };
      },
    },
  },
};

export default plugin;
