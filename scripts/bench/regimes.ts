/**
 * What the bench and its tests share: the three regimes of LM Studio behaviour, the search
 * settings each fleet model is tested with, and a probe timed on the emulator's virtual clock.
 *
 * @module
 */

import type { LmStudio } from "../../src/lmstudio/client.ts";
import { DEFAULT_MIN_CONTEXT, defaultPrecision, RESERVE_TOKENS } from "../../src/lmstrix.ts";
import { LmStudioProbe } from "../../src/probe/lmstudio_probe.ts";
import type { SearchConfig } from "../../src/search/context_search.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import type { Emulator } from "../emulator/server.ts";

/** Regime d's depth at which attention has doubled a token's prefill cost, tokens. */
export const SLOW_PREFILL_DOUBLING = 8192;

/** A regime: a name, what it stands for, and how it rewrites each profile. */
export interface Regime {
  key: "a" | "b" | "c" | "d";
  name: string;
  apply(profile: ModelProfile): ModelProfile;
}

/**
 * The regimes: every refusal a quick guardrail one and every model with a prompt cache (a);
 * every refusal an engine failure and no model with a cache (b); each model as the demo fleet
 * describes it (c); the same shelf on a machine slow at long prompts (d: attention doubles a
 * token's prefill cost at 8,192 tokens of depth instead of 24,576, as on a CPU or a laptop).
 */
export const REGIMES: readonly Regime[] = [
  {
    key: "a",
    name: "guardrail refusals + prompt cache",
    apply: (p) => ({ ...p, refusal: "guardrail", promptCache: true }),
  },
  {
    key: "b",
    name: "engine-failure refusals + no prompt cache",
    apply: (p) => ({ ...p, refusal: "engine", promptCache: false }),
  },
  { key: "c", name: "mixed shelf (the demo fleet as described)", apply: (p) => ({ ...p }) },
  {
    key: "d",
    name: "slow long prompts (the mixed shelf, attention doubling at 8k)",
    apply: (p) => ({ ...p, prefillSlowdownTokens: SLOW_PREFILL_DOUBLING }),
  },
];

/** The search settings of `profile`: the CLI's defaults, or `precision` when given. */
export function benchConfig(profile: ModelProfile, precision?: number): SearchConfig {
  return {
    declared: profile.declaredContext,
    minContext: Math.min(DEFAULT_MIN_CONTEXT, profile.declaredContext),
    precision: precision ?? defaultPrecision(profile.declaredContext),
    reserve: RESERVE_TOKENS,
  };
}

/**
 * The real probe of `modelKey`, timed on `emulator`'s virtual clock (so that the search measures
 * the costs the regime implies), with a fixed seed so that runs repeat.
 */
export function virtualProbe(
  lms: LmStudio,
  emulator: Emulator,
  modelKey: string,
  runId: string,
): LmStudioProbe {
  return new LmStudioProbe(lms, modelKey, { seed: 7, runId, now: () => emulator.now() });
}
