/**
 * An evaluation error: the policy that raised it is skipped and reported (Cedar semantics).
 * Deliberately not an Error subclass: evaluation errors are ordinary outcomes, and capturing a
 * stack trace for each would dominate the cost of a failing condition.
 */
export class CedarError {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

/** A policy uses a construct this evaluator does not implement: the policy set is rejected. */
export class UnsupportedPolicyError extends Error {
  override name = 'UnsupportedPolicyError'
}
