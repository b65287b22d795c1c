/**
 * The exit codes of the outside contract, named once: `main.ts` maps errors and signals to them,
 * and `cli/` commands return them.
 *
 * @module
 */

/** Exit codes of a run that was not stopped by a signal. */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** Done, but at least one model could not be tested (its record says why). */
  someFailed: 1,
  /** Usage error or bad input: unknown flag or model, bad number, unreadable registry. */
  usage: 2,
  /** LM Studio cannot be reached (or stopped answering). */
  unreachable: 3,
  /** Another lmstrix run holds the lock. */
  locked: 4,
  /**
   * stdout or stderr lost its reader (`lmstrix show x | head`): stopped as on an interrupt,
   * quietly; 128 + SIGPIPE's number, as a shell reports a process killed by it.
   */
  brokenPipe: 141,
} as const;

/**
 * The signals a run stops on cleanly (unload, save, release the lock), with the shell's exit
 * code for each, 128 + the signal's number. The contract names 130 (SIGINT) and 143 (SIGTERM);
 * SIGHUP (the terminal closed) and SIGQUIT follow the same rule.
 */
export const SIGNAL_EXIT_CODES = {
  SIGHUP: 129,
  SIGINT: 130,
  SIGQUIT: 131,
  SIGTERM: 143,
} as const;

/** A signal LMStrix stops on. */
export type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/** The exit code of a run stopped by `signal`; an unknown name counts as SIGINT. */
export function exitCodeForSignal(signal: string): number {
  return Object.hasOwn(SIGNAL_EXIT_CODES, signal)
    ? SIGNAL_EXIT_CODES[signal as StopSignal]
    : SIGNAL_EXIT_CODES.SIGINT;
}
