/**
 * All printing goes through here: data to stdout, progress, warnings and errors to stderr.
 *
 * Colour and the live progress line are used only on a terminal and never with `--no-color` or
 * `NO_COLOR`; under cron the output is plain lines, and `--quiet` keeps stderr silent but for
 * errors.
 *
 * Text from LM Studio (model keys, names, error texts) can hold escape sequences that retitle or
 * clear a terminal, or newlines that split a row: views pass it through {@linkcode displayText},
 * and every line written here is checked again, so that only this module's own colour codes
 * reach the terminal. JSON documents are written exactly.
 *
 * A stream whose reader has gone (`lmstrix show x | head`) is a broken pipe: writing to it stops
 * quietly and the `onClosed` callback lets the run stop as it does for an interrupt.
 *
 * @module
 */

import { writeAllSync } from "./write_all.ts";

/** How many columns `text` takes on a terminal (colour codes take none). */
export function visibleWidth(text: string): number {
  // deno-lint-ignore no-control-regex
  return [...text.replace(/\x1b\[[0-9;]*m/g, "")].length;
}

/**
 * Wraps `text` at spaces into lines of at most `width - 1` columns, indent included (a line that
 * fills the last column wraps on some terminals); no limit when `width` is undefined. The first
 * line starts with `first` (default `indent`), the others with `indent`. The one word-wrap of
 * every text a person reads: a word longer than the line keeps a line of its own rather than
 * being cut, and a quoted command stays whole, so a name, a path or a command can be copied.
 */
export function wrapWords(
  text: string,
  indent: string,
  width: number | undefined,
  first: string = indent,
): string[] {
  if (width === undefined || visibleWidth(first + text) <= width - 1) return [first + text];
  const lines: string[] = [];
  let lead = first;
  let line = "";
  // A quoted span ("lmstrix apply --undo --all") stays on one line, to be copied, when it fits;
  // so does a short aside in parentheses ("(13 ms)").
  const room = width - 1 - visibleWidth(indent);
  const words = (text.match(/(?:[^ "(]+|"[^"]*"?|\([^ )]*(?: [^ )]*){0,2}\)|\()+/g) ?? [])
    .flatMap((word) => visibleWidth(word) > room ? word.split(" ") : [word]);
  for (const word of words) {
    if (line !== "" && visibleWidth(lead + line) + 1 + visibleWidth(word) > width - 1) {
      lines.push(lead + line);
      lead = indent;
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(lead + line);
  return lines;
}

/**
 * Wraps each line of `text` (a message may hold several) as {@linkcode wrapWords} does; a line
 * that fits is left as it is, a line's own leading spaces carry on to its continuation lines.
 */
function wrapMessage(text: string, width: number | undefined, first = "", indent = ""): string {
  return text.split("\n").flatMap((line, i) => {
    const own = /^ */.exec(line)![0];
    const lead = i === 0 ? first : "";
    return wrapWords(line.slice(own.length), own + indent, width, lead + own);
  }).join("\n");
}

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
  /**
   * Width to fit, in columns: default `COLUMNS` when set, else the terminal's width when stdout
   * (for tables) or stderr (for progress) is a terminal, else no limit.
   */
  columns?: number | undefined;
}

const encoder = new TextEncoder();

/**
 * A sink on a standard stream. When the reader has gone (a broken pipe) further writes are
 * dropped and `onClosed` is called once, so the run can stop as it would on an interrupt.
 */
export function streamSink(
  file: { writeSync(p: Uint8Array): number; isTerminal(): boolean },
  onClosed: () => void = () => {},
): TextSink {
  let closed = false;
  return {
    write(text: string) {
      if (closed) return;
      try {
        writeAllSync(file, encoder.encode(text));
      } catch (error) {
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
        closed = true;
        onClosed();
      }
    },
    get isTerminal() {
      return file.isTerminal();
    },
  };
}

/**
 * Characters that move the cursor, retitle or clear a terminal (controls), end a line, or print
 * as nothing or reorder text (format characters: zero-width spaces and joiners, bidirectional
 * marks, overrides and isolates, soft hyphens, tags): shown escaped, so `qwen\u200b2.5` cannot
 * pass for `qwen2.5`.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;

/**
 * Text from outside (LM Studio, a file) made safe to print: control characters, newlines and
 * bidirectional overrides become visible escapes (`\x1b`, `\n`, `\u202e`), so that a model key can
 * neither split a row nor send commands to the terminal.
 */
export function displayText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    const code = c.codePointAt(0)!;
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : code > 0xffff
      ? `\\u{${code.toString(16)}}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** Our own colour codes (SGR), the one escape sequence let through to the terminal. */
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]*m/y;

/**
 * A line checked before it is written: any escape or control character that is not one of our
 * colour codes, a newline or a tab is shown escaped (see {@linkcode displayText}).
 */
function guard(text: string): string {
  let out = "";
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\n" || c === "\t") continue;
    if (c === "\x1b") {
      SGR.lastIndex = i;
      const match = SGR.exec(text);
      if (match !== null) {
        i += match[0].length - 1;
        continue;
      }
    }
    // One code point: a tag character is two UTF-16 units.
    const point = String.fromCodePoint(text.codePointAt(i)!);
    UNSAFE.lastIndex = 0;
    if (!UNSAFE.test(point)) {
      i += point.length - 1;
      continue;
    }
    out += text.slice(start, i) + displayText(point);
    start = i + point.length;
    i += point.length - 1;
  }
  return start === 0 ? text : out + text.slice(start);
}

/**
 * Whether the value of `NO_COLOR` asks for no colour: only a non-empty value does, as no-color.org
 * says (`NO_COLOR=` left empty by a script keeps colour).
 */
export function noColorRequested(value: string | undefined): boolean {
  return value !== undefined && value !== "";
}

/** A width from `COLUMNS`, when it holds a usable number. */
function columnsFromEnv(): number | undefined {
  try {
    const value = Number(Deno.env.get("COLUMNS"));
    return Number.isSafeInteger(value) && value >= 20 ? value : undefined;
  } catch {
    return undefined; // No --allow-env (library use): fall back to the terminal.
  }
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
  readonly #columns: number | undefined;

  /** Builds the output from the global options; colour defaults to "stream is a terminal". */
  constructor(options: OutputOptions = {}) {
    this.json = options.json ?? false;
    this.quiet = options.quiet ?? false;
    this.verbose = options.verbose ?? false;
    this.stdout = options.stdout ?? streamSink(Deno.stdout);
    this.stderr = options.stderr ?? streamSink(Deno.stderr);
    this.#columns = "columns" in options ? options.columns : columnsFromEnv();
    const colorAllowed = options.color ?? true;
    this.style = makeStyles(colorAllowed && this.stdout.isTerminal);
    this.errStyle = makeStyles(colorAllowed && this.stderr.isTerminal);
  }

  /** Width stdout's tables must fit: `columns`, else the terminal's, else undefined (no limit). */
  get columns(): number | undefined {
    return this.#columns ?? (this.stdout.isTerminal ? terminalWidth() : undefined);
  }

  /** Width stderr's progress lines must fit, as {@linkcode Output.columns} for stderr. */
  get errColumns(): number | undefined {
    return this.#columns ?? (this.stderr.isTerminal ? terminalWidth() : undefined);
  }

  /**
   * Fields the `--json` error document of this run carries besides `error`: a command stopped
   * midway (`test` on a signal) puts its results so far here, so that its one document holds them.
   */
  errorDocumentFields: Record<string, unknown> = {};

  /** Writes data (a table, a line of text) to stdout. */
  data(text: string): void {
    // stdout and stderr may be one terminal: a live progress line must not run into the data.
    this.#clearLive();
    const safe = guard(text);
    this.stdout.write(safe.endsWith("\n") ? safe : safe + "\n");
  }

  /** Writes the one JSON document of a `--json` run. */
  document(value: unknown): void {
    this.stdout.write(JSON.stringify(value, null, 2) + "\n");
  }

  /** An informational line on stderr, silenced by `--quiet`. */
  info(message: string): void {
    if (this.quiet) return;
    this.#clearLive();
    this.stderr.write(wrapMessage(guard(message), this.errColumns) + "\n");
  }

  /**
   * A line on stderr that `--quiet` keeps, wrapped at words: a run's summary, which a cron log
   * needs as much as its results.
   */
  note(message: string): void {
    this.#clearLive();
    this.stderr.write(wrapMessage(guard(message), this.errColumns, "", "  ") + "\n");
  }

  /** A line shown only with `--verbose`, wrapped at words to the width. */
  debug(message: string): void {
    if (!this.verbose) return;
    this.#clearLive();
    // Wrapped as info is, each line dimmed on its own (a colour code does not span lines).
    const lines = wrapMessage(guard(message), this.errColumns, "", "  ").split("\n");
    for (const line of lines) this.stderr.write(this.errStyle.dim(line) + "\n");
  }

  /** A warning on stderr, silenced by `--quiet`. */
  warn(message: string): void {
    if (this.quiet) return;
    this.#clearLive();
    const lead = `${this.errStyle.yellow("warning")}: `;
    this.stderr.write(wrapMessage(displayText(message), this.errColumns, lead, "  ") + "\n");
  }

  /**
   * An error and its hint on stderr; never silenced. One line each whatever the text holds (a
   * newline in it is escaped), wrapped at words to the width when one is known.
   */
  error(message: string, hint?: string): void {
    this.#clearLive();
    const width = this.errColumns;
    const error = `${this.errStyle.red("error")}: `;
    this.stderr.write(wrapWords(displayText(message), "  ", width, error).join("\n") + "\n");
    if (hint) {
      const lead = `${this.errStyle.dim("hint")}: `;
      this.stderr.write(wrapWords(displayText(hint), "  ", width, lead).join("\n") + "\n");
    }
  }

  /**
   * Progress: on a terminal one line rewritten in place; otherwise a plain line each call,
   * unless `final` is false and the stream is not a terminal (intermediate ticks are skipped).
   * The caller fits the line to {@linkcode Output.errColumns} (it knows what may be shortened);
   * a live line that is still too wide is cut so that it cannot wrap and break the rewriting.
   */
  progress(message: string, options: { final?: boolean } = {}): void {
    if (this.quiet) return;
    const final = options.final ?? true;
    // One line by definition: a newline in it would break the live line's rewriting.
    const safe = guard(message).replaceAll("\n", "\\n");
    if (this.stderr.isTerminal) {
      const width = this.errColumns ?? 100;
      const line = [...safe].length >= width ? [...safe].slice(0, width - 1).join("") : safe;
      this.stderr.write(`\r\x1b[2K${line}`);
      this.#liveLine = true;
      if (final) this.#clearLive(true);
    } else if (final) {
      this.stderr.write(safe + "\n");
    }
  }

  /** Ends a live line (keeping its text when `keep`). */
  #clearLive(keep = false): void {
    if (!this.#liveLine) return;
    this.stderr.write(keep ? "\n" : "\r\x1b[2K");
    this.#liveLine = false;
  }
}

function terminalWidth(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}
