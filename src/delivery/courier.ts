// A courier carries deliveries of one kind to one destination. The scheduler does not know how;
// the courier does not know about retries: it reports what happened, one report per job.

import { formatTarget } from "../domains/targets.ts";
import { domainOf } from "../mail/address.ts";
import type { ClaimedDelivery, ClaimedTarget, QueuedMessage } from "../queue/claim.ts";
import type { AttemptReport } from "../queue/settle.ts";

export interface Job {
  delivery: ClaimedDelivery;
  message: QueuedMessage;
}

export interface Courier {
  /** Jobs share a destination (`destinationOf`); the result has one report per job, same order. */
  deliver(jobs: Job[]): Promise<AttemptReport[]>;
}

/**
 * Deliveries that may share a connection and a concurrency limit: the recipient's domain for the
 * internet (or the smarthost), the inner host for a relay, the URL's origin for webhooks.
 */
export function destinationOf(target: ClaimedTarget, rcpt: string): string {
  switch (target.kind) {
    case "mx":
      return `mx:${domainOf(rcpt)}`;
    case "forward":
      return `forward:${domainOf(target.address)}`;
    case "webhook":
      return `webhook:${new URL(target.url).origin}`;
    case "relay":
    case "mailbox":
    case "tls-reports":
      return formatTarget(target);
    case "unreadable":
      return `unreadable:${target.text}`;
  }
}

/** A report for every job, all the same: a connection that failed fails every transaction on it. */
export function reportAll(jobs: Job[], report: Omit<AttemptReport, "deliveryId">): AttemptReport[] {
  return jobs.map((j) => ({ ...report, deliveryId: j.delivery.id }));
}
