// When to try a delivery again, and when to give up. Pure: the clock and the dice come in.

export interface RetryPolicy {
  baseSeconds: number;
  maxSeconds: number;
  lifetimeSeconds: number;
}

/**
 * Delay after the n-th failed attempt (n from 1): base·2^(n-1), capped, with ±20% jitter so
 * that deliveries deferred together do not all come back in the same second.
 */
export function retryDelaySeconds(
  failedAttempts: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(failedAttempts - 1, 0), 30);
  const raw = Math.min(policy.baseSeconds * 2 ** exponent, policy.maxSeconds);
  return Math.min(raw * (0.8 + 0.4 * random()), policy.maxSeconds);
}

export type AttemptOutcome = "delivered" | "deferred" | "bounced";

/** What an SMTP reply code means for the recipient; undefined code = a network failure. */
export function outcomeOfReply(code: number | undefined): AttemptOutcome {
  if (code === undefined) return "deferred";
  if (code >= 200 && code < 300) return "delivered";
  if (code >= 500 && code < 600) return "bounced";
  return "deferred";
}

/**
 * The next step after a failed (deferred) attempt: the time of the next try, or expiry when that
 * would be past the message's lifetime.
 */
export function nextAttempt(
  failedAttempts: number,
  queuedAt: Date,
  now: Date,
  policy: RetryPolicy,
  random: () => number = Math.random,
): { kind: "retry"; at: Date } | { kind: "expired" } {
  const expiresAt = queuedAt.getTime() + policy.lifetimeSeconds * 1000;
  if (now.getTime() >= expiresAt) return { kind: "expired" };
  const at = now.getTime() + retryDelaySeconds(failedAttempts, policy, random) * 1000;
  // The last try happens at the end of the lifetime rather than never.
  return { kind: "retry", at: new Date(Math.min(at, expiresAt)) };
}

/** A retry at a time of its own (a shaped destination's budget opening), within the lifetime. */
export function nextAttemptAt(
  at: Date,
  queuedAt: Date,
  now: Date,
  policy: RetryPolicy,
): { kind: "retry"; at: Date } | { kind: "expired" } {
  const expiresAt = queuedAt.getTime() + policy.lifetimeSeconds * 1000;
  if (now.getTime() >= expiresAt) return { kind: "expired" };
  return { kind: "retry", at: new Date(Math.min(Math.max(at.getTime(), now.getTime()), expiresAt)) };
}
