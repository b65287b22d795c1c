/**
 * Numbers the outside contract fixes (/work/shared/contract.md), named once for every layer.
 *
 * @module
 */

/**
 * Tokens a needle prompt leaves free in the context it fills: "a prompt that fills W up to a
 * reserve of at most 64 tokens". It is also the most the model may write in answer ("at most 64
 * new tokens"), so that the answer always fits.
 */
export const RESERVE_TOKENS = 64;
