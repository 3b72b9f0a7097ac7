// Which settled deliveries the sender hears about, as DSN messages to queue: one DSN per message
// per event, listing every recipient of that message that shares it (RFC 3464).
import type { Target } from "../domains/targets.ts";
import { normalizeAddress } from "../mail/address.ts";
import { buildDsn, type DsnAction, isNullSender, shouldNotify } from "../mail/dsn.ts";
import { headerValue, readHeaders } from "../mail/headers.ts";
import type { NewMessage } from "./enqueue.ts";
import { newMessageId } from "./ids.ts";
import type { DeliveryEvent, DsnWriter, SettledDelivery } from "./settle.ts";

const ACTION: Record<DeliveryEvent, DsnAction> = {
  failed: "failed",
  delayed: "delayed",
  delivered: "delivered",
};

export interface NoticeDeps {
  hostname: string;
  lifetimeSeconds: number;
  /** Where mail to the sender goes (the router's choice for a bounce), undefined for nowhere. */
  targetFor(address: string): Promise<Target | undefined>;
  /** Told of each notice made, with the batch it was made for (written only if that commits). */
  onNotice?(action: DsnAction, target: Target): void;
}

/** Inbound mail's stored verdict (`AuthVerdict`, or null with the checks off) says SPF passed. */
function spfPassed(authResults: unknown): boolean {
  return (authResults as { spf?: unknown } | null)?.spf === "pass";
}

export function dsnWriter(deps: NoticeDeps): DsnWriter {
  return async (settled) => {
    const groups = new Map<string, SettledDelivery[]>();
    for (const s of settled) {
      if (!s.event || isNullSender(s.message.mailFrom)) continue; // never a DSN about a DSN or a bounce
      if (!shouldNotify(s.delivery.notify, ACTION[s.event])) continue;
      const key = `${s.message.id} ${s.event}`;
      groups.set(key, [...(groups.get(key) ?? []), s]);
    }
    const notices: { message: NewMessage; about: number[] }[] = [];
    const now = new Date();
    for (const group of groups.values()) {
      const { message, event } = group[0]!;
      const sender = message.mailFrom;
      const target = await deps.targetFor(sender);
      if (!target) continue; // a local sender with nowhere to receive: nobody to tell
      const id = newMessageId();
      const dsn = buildDsn({
        reportingMta: deps.hostname,
        sender,
        originalMessage: message.raw,
        ret: message.ret === "HDRS" || message.ret === "FULL" ? message.ret : undefined,
        senderVerified: message.direction !== "inbound" || spfPassed(message.authResults),
        envid: message.envid ?? undefined,
        arrivalDate: message.receivedAt,
        queueId: message.id,
        now,
        recipients: group.map((s) => ({
          finalRecipient: s.delivery.rcpt,
          originalRecipient: s.delivery.orcpt ?? undefined,
          action: ACTION[event!],
          status: s.report.status,
          remoteMta: s.report.remoteMta ?? undefined,
          diagnosticCode: s.report.remoteMta ? s.report.reply : undefined,
          lastAttemptDate: now,
          willRetryUntil:
            event === "delayed"
              ? new Date(s.delivery.createdAt.getTime() + deps.lifetimeSeconds * 1000)
              : undefined,
        })),
      });
      notices.push({
        about: group.map((s) => s.delivery.id),
        message: {
          id,
          direction: "dsn",
          mailFrom: "",
          raw: dsn.raw,
          subject: headerValue(readHeaders(dsn.raw), "subject"),
          deliveries: [{ rcpt: normalizeAddress(sender), target }],
        },
      });
      deps.onNotice?.(ACTION[event!], target);
    }
    return notices;
  };
}
