/**
 * All printing goes through here: data to stdout, progress, warnings and errors to stderr.
 *
 * Colour and the live progress line are used only on a terminal and never with `--no-color` or
 * `NO_COLOR`; under cron the output is plain lines, and `--quiet` keeps stderr silent but for
 * errors.
 */

import { writeAllSync } from "./write_all.ts";

/** Somewhere text can be written. */
export interface TextSink {
  write(text: string): void;
  /** True when the sink is an interactive terminal. */
  readonly isTerminal: boolean;
}

/** How output should look. */
export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  color?: boolean;
  stdout?: TextSink;
  stderr?: TextSink;
}

const encoder = new TextEncoder();

function denoSink(file: typeof Deno.stdout | typeof Deno.stderr): TextSink {
  return {
    write(text: string) {
      writeAllSync(file, encoder.encode(text));
    },
    get isTerminal() {
      return file.isTerminal();
    },
  };
}

/** A sink that keeps what is written, for tests and for capturing output. */
export class MemorySink implements TextSink {
  text = "";
  readonly isTerminal: boolean;
  /** Creates a sink that claims to be a terminal or not. */
  constructor(isTerminal = false) {
    this.isTerminal = isTerminal;
  }
  /** Appends `text`. */
  write(text: string): void {
    this.text += text;
  }
}

/** ANSI styles that turn into nothing when colour is off. */
export interface Styles {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

function makeStyles(on: boolean): Styles {
  const wrap = (open: number, close: number) => (s: string) =>
    on ? `\x1b[${open}m${s}\x1b[${close}m` : s;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  };
}

/** The one output channel of a command run. */
export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly verbose: boolean;
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  /** Styles for stdout (tables). */
  readonly style: Styles;
  /** Styles for stderr (messages). */
  readonly errStyle: Styles;
  #liveLine = false;

  /** Builds the output from the global options; colour defaults to "stream is a terminal". */
  constructor(options: OutputOptions = {}) {
    this.json = options.json ?? false;
    this.quiet = options.quiet ?? false;
    this.verbose = options.verbose ?? false;
    this.stdout = options.stdout ?? denoSink(Deno.stdout);
    this.stderr = options.stderr ?? denoSink(Deno.stderr);
    const colorAllowed = options.color ?? true;
    this.style = makeStyles(colorAllowed && this.stdout.isTerminal);
    this.errStyle = makeStyles(colorAllowed && this.stderr.isTerminal);
  }

  /** Width of the terminal on stdout, or undefined when it is not one. */
  get columns(): number | undefined {
    if (!this.stdout.isTerminal) return undefined;
    try {
      return Deno.consoleSize().columns;
    } catch {
      return undefined;
    }
  }

  /** Writes data (a table, a line of text) to stdout. */
  data(text: string): void {
    this.stdout.write(text.endsWith("\n") ? text : text + "\n");
  }

  /** Writes the one JSON document of a `--json` run. */
  document(value: unknown): void {
    this.stdout.write(JSON.stringify(value, null, 2) + "\n");
  }

  /** An informational line on stderr, silenced by `--quiet`. */
  info(message: string): void {
    if (this.quiet) return;
    this.#clearLive();
    this.stderr.write(message + "\n");
  }

  /** A line shown only with `--verbose`. */
  debug(message: string): void {
    if (!this.verbose) return;
    this.#clearLive();
    this.stderr.write(this.errStyle.dim(message) + "\n");
  }

  /** A warning on stderr, silenced by `--quiet`. */
  warn(message: string): void {
    if (this.quiet) return;
    this.#clearLive();
    this.stderr.write(`${this.errStyle.yellow("warning")}: ${message}\n`);
  }

  /** An error and its hint on stderr; never silenced. */
  error(message: string, hint?: string): void {
    this.#clearLive();
    this.stderr.write(`${this.errStyle.red("error")}: ${message}\n`);
    if (hint) this.stderr.write(`${this.errStyle.dim("hint")}: ${hint}\n`);
  }

  /**
   * Progress: on a terminal one line rewritten in place; otherwise a plain line each call,
   * unless `final` is false and the stream is not a terminal (intermediate ticks are skipped).
   */
  progress(message: string, options: { final?: boolean } = {}): void {
    if (this.quiet) return;
    const final = options.final ?? true;
    if (this.stderr.isTerminal) {
      const width = (() => {
        try {
          return Deno.consoleSize().columns;
        } catch {
          return 100;
        }
      })();
      const line = message.length >= width ? message.slice(0, width - 1) : message;
      this.stderr.write(`\r\x1b[2K${line}`);
      this.#liveLine = true;
      if (final) this.#clearLive(true);
    } else if (final) {
      this.stderr.write(message + "\n");
    }
  }

  /** Ends a live line (keeping its text when `keep`). */
  #clearLive(keep = false): void {
    if (!this.#liveLine) return;
    this.stderr.write(keep ? "\n" : "\r\x1b[2K");
    this.#liveLine = false;
  }
}
