/**
 * The `lmstrix` command line: builds the command tree, installs the signal handlers and maps
 * errors to exit codes. This is the only file that reads `Deno.args` or sets the exit code.
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import config from "./deno.json" with { type: "json" };
import { type ApplyCommandOptions, runApply } from "./src/cli/apply.ts";
import { runCheck } from "./src/cli/check.ts";
import { describeFileError } from "./src/cli/file_errors.ts";
import { suggestFlags } from "./src/cli/flag_suggestion.ts";
import { EXAMPLES, examples } from "./src/cli/help_examples.ts";
import { type ListOptions, runList, SORT_KEYS } from "./src/cli/list.ts";
import { LIST_FORMATS } from "./src/cli/list_export.ts";
import { type ReportCommandOptions, runReport } from "./src/cli/report.ts";
import { parseTemperature, type RunCommandOptions, runRun } from "./src/cli/run.ts";
import { runScan } from "./src/cli/scan.ts";
import { runShow } from "./src/cli/show.ts";
import { runStatus } from "./src/cli/status.ts";
import { runTest, type TestCommandOptions } from "./src/cli/test.ts";
import {
  errorText,
  InterruptedError,
  LmstrixError,
  LmStudioUnreachableError,
  LockHeldError,
  ModelNotFoundError,
  RegistryError,
  UsageError,
} from "./src/errors.ts";
import { ExitCode, exitCodeForSignal } from "./src/exit_codes.ts";
import { InterruptGate } from "./src/interrupts.ts";
import { LMStrix } from "./src/lmstrix.ts";
import { CLI_WORDING } from "./src/library_guard.ts";
import { noColorRequested, Output, streamSink, type TextSink } from "./src/output.ts";

/** Global options, accepted before or after the command. */
interface GlobalOptions {
  server?: string;
  lmstudioDir?: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  color?: boolean;
}

/** Exit codes of the contract, decided here and nowhere else. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof InterruptedError) return exitCodeForSignal(error.signal);
  if (error instanceof LockHeldError) return ExitCode.locked;
  if (error instanceof LmStudioUnreachableError) return ExitCode.unreachable;
  if (
    error instanceof UsageError || error instanceof ModelNotFoundError ||
    error instanceof RegistryError
  ) return ExitCode.usage;
  return ExitCode.someFailed;
}

/** Parses a token count: `4096`, or with a `k` suffix, `32k` = 32768. */
function parseTokens(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(k?)\s*$/i.exec(value);
  const amount = match ? Number(match[1]) * (match[2] ? 1024 : 1) : NaN;
  if (!Number.isSafeInteger(amount) || amount <= 0) {
    throw new InvalidArgumentError(
      `expected a positive whole number of tokens such as 4096 or 32k`,
    );
  }
  return amount;
}

/**
 * Parses a number of seconds: `30`, `2.5`. At most a day: a call to LM Studio that takes longer
 * is not coming back, and timers past 2^31 ms (24.8 days) would fire at once.
 */
function parseSeconds(value: string): number {
  const amount = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(amount) || amount <= 0) {
    throw new InvalidArgumentError(`expected a positive number of seconds such as 30 or 2.5`);
  }
  if (amount > MAX_TIMEOUT_SECONDS) {
    throw new InvalidArgumentError(
      `${value.trim()} seconds is more than a day; pass at most ${MAX_TIMEOUT_SECONDS}`,
    );
  }
  return amount;
}

/** The `--timeout` option, on every command that talks to LM Studio. */
function timeoutOption(): Option {
  return new Option(
    "--timeout <seconds>",
    "base deadline of each call to LM Studio; predictions get 15 ms more per prompt token " +
      "(env LMSTRIX_TIMEOUT; default: 60 s, loads 10 min, predictions 2 min). A call that " +
      "passes it or loses its connection is retried with exponential backoff (first delay " +
      "env LMSTRIX_BACKOFF_MS, default 1000)",
  ).argParser(parseSeconds);
}

/** Whether `NO_COLOR` asks for no colour (see {@linkcode noColorRequested}). */
function noColorEnv(): boolean {
  return noColorRequested(Deno.env.get("NO_COLOR"));
}

/**
 * The global options. `server: false` keeps `--server` out of the help of a command that never
 * talks to LM Studio (it is still accepted, as a global option is everywhere).
 */
function addGlobalOptions(command: Command, { server = true } = {}): Command {
  const serverOption = new Option(
    "--server <url>",
    "LM Studio address: http://host:port or ws://host:port, as LM Studio shows it " +
      "(env LMSTRIX_SERVER; default: discovery)",
  );
  return command
    .addOption(server ? serverOption : serverOption.hideHelp())
    .option("--lmstudio-dir <dir>", "LM Studio home directory (env LMSTRIX_LMSTUDIO_DIR)")
    .option("--json", "print one JSON document on stdout")
    .option("-q, --quiet", "no progress; results and errors still print")
    .option("-v, --verbose", "print more, and stack traces of errors")
    .option("--no-color", "no colour (also NO_COLOR)");
}

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const interrupt = new AbortController();
  // A reader that has gone (`lmstrix show x | head`) stops the run like an interrupt: unload,
  // save, and leave quietly.
  const brokenPipe = () => {
    if (!interrupt.signal.aborted) interrupt.abort(BROKEN_PIPE);
  };
  const sinks: { stdout: TextSink; stderr: TextSink } = {
    stdout: streamSink(Deno.stdout, brokenPipe),
    stderr: streamSink(Deno.stderr, brokenPipe),
  };
  // Until the options are parsed, errors follow what the arguments say.
  let output = new Output({
    ...sinks,
    json: args.includes("--json"),
    quiet: args.includes("--quiet") || args.includes("-q"),
    color: !noColorEnv() && !args.includes("--no-color"),
  });
  let exitCode = 0;
  let stderrText = "";

  let lmstrix: LMStrix | undefined;
  const setup = (command: Command) => {
    const options = command.optsWithGlobals() as GlobalOptions;
    output = new Output({
      ...sinks,
      json: options.json ?? false,
      quiet: options.quiet ?? false,
      verbose: options.verbose ?? false,
      color: (options.color ?? true) && !noColorEnv(),
    });
    lmstrix = new LMStrix({
      server: options.server,
      lmstudioDir: options.lmstudioDir,
      [CLI_WORDING]: true,
    });
    return lmstrix;
  };

  const program = addGlobalOptions(new Command("lmstrix"))
    .description(
      "Find the real context limits of the LLMs in LM Studio: loadable and working context.",
    )
    .version(config.version, "-V, --version", "print the version")
    .showSuggestionAfterError(true)
    .addHelpText("after", examples(EXAMPLES.lmstrix))
    .exitOverride()
    .configureOutput({
      writeOut: (text) => output.stdout.write(text),
      writeErr: (text) => {
        stderrText += text;
      },
      outputError: (text) => {
        stderrText += text;
      },
    });

  addGlobalOptions(program.command("scan"))
    .description("discover the models in LM Studio and add them to the registry")
    .addOption(timeoutOption())
    .addHelpText("after", examples(EXAMPLES.scan))
    .action(async (options: { timeout?: number }, command: Command) => {
      exitCode = await runScan(setup(command), output, { timeoutSeconds: options.timeout });
    });

  addGlobalOptions(program.command("list"), { server: false })
    .description("show the registry: declared, loadable and working context of every model")
    .addOption(new Option("--sort <key>", "sort by").choices([...SORT_KEYS]).default("name"))
    .option("--reverse", "reverse the order")
    .addOption(
      new Option("--format <format>", "table, or csv / markdown to export")
        .choices([...LIST_FORMATS]),
    )
    .addHelpText("after", examples(EXAMPLES.list))
    .action(async (options: ListOptions, command: Command) => {
      exitCode = await runList(setup(command), output, options, interrupt.signal);
    });

  addGlobalOptions(program.command("test"))
    .description("find the loadable and working context of models (resumable)")
    .argument("[model...]", "model ids, or unique parts of ids")
    .option("--all", "test every LLM not tested yet; models whose test failed are left out")
    .option("--force", "test again models already tested (named or with --all)")
    .option("--retry-failed", "with --all, test again models whose test failed")
    .addHelpText(
      "after",
      [
        "",
        "When results change: a tested model keeps its numbers unless --force is given,",
        "whether it is named or picked by --all. --all leaves out models whose test",
        "failed (their file unchanged) unless --retry-failed or --force. A test cut",
        "short resumes where it stopped, also under --force: run the same command again.",
        examples(EXAMPLES.test),
      ].join("\n"),
    )
    .option(
      "--precision <tokens>",
      "precision of the results (default max(256, 1% of declared))",
      parseTokens,
    )
    .option("--min-context <tokens>", "smallest context worth testing (default 2048)", parseTokens)
    .option("--max-context <tokens>", "never load a model above this context", parseTokens)
    .option(
      "--ctx <tokens>",
      "check one size, no search: load at it, one needle probe filling it, a verdict " +
        "(logged; the stored limits stay), e.g. lmstrix test qwen --ctx 32k",
      parseTokens,
    )
    .addOption(timeoutOption())
    .action(
      async (
        models: string[],
        options: TestCommandOptions & { ctx?: number },
        command: Command,
      ) => {
        const { ctx, ...rest } = options;
        exitCode = ctx === undefined
          ? await runTest(setup(command), output, models, rest, interrupt.signal)
          : await runCheck(setup(command), output, models, ctx, rest, interrupt.signal);
      },
    );

  addGlobalOptions(program.command("status"), { server: false })
    .description("count models by status and show who holds the lock")
    .addHelpText("after", examples(EXAMPLES.status))
    .action(async (_options, command: Command) => {
      exitCode = await runStatus(setup(command), output);
    });

  addGlobalOptions(program.command("show"), { server: false })
    .description("show one model's record and its latest attempts")
    .addHelpText("after", examples(EXAMPLES.show))
    .argument("<model>", "model id, or a unique part of one")
    .action(async (model: string, _options, command: Command) => {
      exitCode = await runShow(setup(command), output, model);
    });

  addGlobalOptions(program.command("apply"), { server: false })
    .description(
      "write each tested model's working context into LM Studio's per-model defaults " +
        "(--undo puts the files back)",
    )
    .argument("[model...]", "model ids, or unique parts of ids")
    .option("--all", "every model in the registry (untested ones are skipped and named)")
    .option("--dry-run", "print what would change and change nothing")
    .option("--undo", "restore the files as they were before lmstrix changed them")
    .option(
      "--margin <tokens|N%>",
      "take this many tokens (512, 1k) or this share of the working context (10%) off " +
        "the value written (default 0)",
    )
    .addHelpText("after", examples(EXAMPLES.apply))
    .action(async (models: string[], options: ApplyCommandOptions, command: Command) => {
      exitCode = await runApply(setup(command), output, models, options, interrupt.signal);
    });

  addGlobalOptions(program.command("report"), { server: false })
    .description(
      "write one self-contained HTML page: every model's limits on one axis, and the probes " +
        "each number rests on",
    )
    .option("--out <file>", "where to write it (default: lmstrix-report.html here)")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        "  lmstrix report                  writes ./lmstrix-report.html, prints its path",
        "  lmstrix report --out ~/limits.html",
        "",
        "The page makes no network request (no script, font or image from elsewhere):",
        "open it from disk in any browser, or mail it.",
      ].join("\n"),
    )
    .action(async (options: ReportCommandOptions, command: Command) => {
      exitCode = await runReport(setup(command), output, options);
    });

  addGlobalOptions(program.command("run"))
    .description(
      "complete a prompt with a tested model at its working context, streaming the answer",
    )
    .argument("<model>", "model id, or a unique part of one")
    .argument("[prompt]", "the prompt (or --file)")
    .option("--file <path>", "read the prompt from a file (- reads stdin)")
    .option(
      "--max-tokens <tokens>",
      "at most this many answer tokens (default: no limit)",
      parseTokens,
    )
    .option(
      "--temperature <t>",
      "sampling temperature, 0 to 10 (default 0: the same answer each time)",
      (value: string) => {
        try {
          return parseTemperature(value);
        } catch (error) {
          throw new InvalidArgumentError(errorText(error));
        }
      },
    )
    .addOption(timeoutOption())
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        '  lmstrix run qwen2.5-7b "Write a haiku about context windows."',
        "  lmstrix run llama-3.1 --file report.txt --max-tokens 500",
        "  git diff | lmstrix run qwen --file - --json",
        "",
        "The model loads at its tested working context and is unloaded at the end",
        "(also on Ctrl-C). A prompt longer than that context allows is refused",
        "(exit 2), naming the tested models it would fit. The prompt is sent as it",
        "is (a raw completion, no chat template), as the needle probe measured it.",
      ].join("\n"),
    )
    .action(
      async (
        model: string,
        prompt: string | undefined,
        options: RunCommandOptions,
        command: Command,
      ) => {
        exitCode = await runRun(setup(command), output, model, prompt, options, interrupt.signal);
      },
    );

  // First signal: stop cleanly (unload, save, release the lock). A person's second one (after a
  // clear gap, or another signal) leaves at once; the same one delivered twice (the terminal's
  // process group and `deno task` forwarding it) is one request.
  const gate = new InterruptGate();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];
  const handlers = signals.map((signal) => {
    const handler = () => {
      const verdict = gate.receive(signal);
      if (verdict === "duplicate") return;
      if (verdict === "quit") Deno.exit(exitCodeForSignal(signal));
      try {
        output.warn(`${signal}: stopping, unloading and saving progress (again to quit at once)`);
      } catch {
        // The terminal is gone (SIGHUP): stop all the same.
      }
      interrupt.abort(signal);
    };
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });

  try {
    if (args.length === 0) {
      // No command: the usage, on stderr, as a usage error (the contract's exit 2).
      output.stderr.write(program.helpInformation());
      exitCode = ExitCode.usage;
    } else {
      await program.parseAsync(args, { from: "user" });
    }
  } catch (error) {
    exitCode = interrupt.signal.reason === BROKEN_PIPE && error instanceof InterruptedError
      ? ExitCode.brokenPipe // The reader has gone: nothing more to say to it.
      : report(error, output, stderrText, commandOf(program, args));
  } finally {
    // A damaged record does not stop the command; say which one was left out, and why.
    for (const { id, problem } of lmstrix?.quarantined ?? []) {
      output.warn(
        `The registry's record of "${id}" ${problem}; it is left out, and kept in the file ` +
          'as it is until "lmstrix scan" finds the model and replaces it',
      );
    }
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  }
  // A command that does not watch for interrupts (scan, list, ...) finished its short work
  // anyway; the run still ends as stopped by the signal, as the user asked.
  if (interrupt.signal.aborted && exitCode !== ExitCode.usage && exitCode !== ExitCode.locked) {
    exitCode = interrupt.signal.reason === BROKEN_PIPE
      ? ExitCode.brokenPipe
      : exitCodeFor(new InterruptedError(String(interrupt.signal.reason)));
  }
  return exitCode;
}

/** The command `args` run (as commander would pick it), or null when there is none. */
function commandOf(program: Command, args: string[]): Command | null {
  return program.commands.find((c) => args.includes(c.name())) ?? null;
}

/** The interrupt's reason when stdout or stderr lost its reader (as a shell names it). */
const BROKEN_PIPE = "SIGPIPE";

/** The longest `--timeout`, in seconds: a day. */
const MAX_TIMEOUT_SECONDS = 86_400;

/**
 * Prints an error the user can act on (on stderr, and with `--json` also as the contract's
 * `{ "error": { "exitCode", "message" } }` on stdout); returns its exit code.
 */
function report(
  error: unknown,
  output: Output,
  commanderText: string,
  command: Command | null,
): number {
  const fail = (exitCode: number, message: string, hint?: string) => {
    output.error(message, hint);
    // A test stopped midway adds its results so far: still one document.
    if (output.json) {
      output.document({ ...output.errorDocumentFields, error: { exitCode, message } });
    }
    return exitCode;
  };
  if (error instanceof CommanderError) {
    if (
      error.code === "commander.helpDisplayed" || error.code === "commander.version" ||
      error.code === "commander.help"
    ) {
      return ExitCode.ok;
    }
    // One line: commander puts its "(Did you mean ...?)" on a line of its own.
    let message = commanderText.trim().replace(/^error:\s*/i, "").replace(/\s*\n\s*/g, " ") ||
      error.message;
    const unknown = /^unknown option '([^']+)'$/.exec(message)?.[1];
    if (error.code === "commander.unknownOption" && unknown !== undefined) {
      const known = [...(command?.options ?? []), ...(command?.parent ?? command)?.options ?? []]
        .map((o) => o.long).filter((f): f is string => f !== undefined);
      const close = suggestFlags(unknown, known);
      if (close.length > 0) message += ` (Did you mean ${close.join(" or ")}?)`;
    }
    const help = command === null ? "lmstrix --help" : `lmstrix ${command.name()} --help`;
    return fail(ExitCode.usage, message, `run "${help}" to see the options`);
  }
  if (error instanceof LmstrixError) {
    const code = fail(exitCodeFor(error), error.message, error.hint);
    if (output.verbose && error.stack) output.debug(error.stack);
    return code;
  }
  const fileProblem = describeFileError(error);
  if (fileProblem !== null) {
    const code = fail(fileProblem.exitCode, fileProblem.message, fileProblem.hint);
    if (output.verbose && error instanceof Error && error.stack) output.debug(error.stack);
    return code;
  }
  const code = fail(
    ExitCode.someFailed,
    `Unexpected failure: ${errorText(error)}`,
    output.verbose ? undefined : "run again with --verbose for details",
  );
  if (output.verbose && error instanceof Error && error.stack) output.debug(error.stack);
  return code;
}

if (import.meta.main) {
  // Exit explicitly: a call LM Studio never answered keeps the SDK's socket open, and it must not
  // keep the process alive once the run has unloaded, saved and reported.
  Deno.exit(await main(Deno.args));
}
