// Recipient callouts for relay routes, as Postfix's reject_unverified_recipient: before taking mail
// for an inner server, ask it whether the recipient exists. Its refusal then reaches the sending
// MTA at RCPT, instead of becoming a bounce to an envelope sender that may be forged
// (backscatter). Only a definite 5xx refuses: an inner server that is down, slow or unsure lets
// the mail in, to wait in the queue as it would without the check.
import type { ClientTimeouts, Reply, SmtpClientConnection } from "../smtp/client.ts";
import { connectSmtp } from "./dial.ts";

export interface InnerServer {
  host: string;
  port: number;
  lmtp: boolean;
}

export type Verification =
  | { kind: "accepted" }
  | { kind: "refused"; reply: Reply }
  | { kind: "unknown"; why: string };

/** How long an answer is believed. A refusal is kept shorter, so a new mailbox works soon. */
const TTL_MS: Record<Verification["kind"], number> = {
  accepted: 60 * 60_000,
  refused: 10 * 60_000,
  unknown: 60_000,
};
/** Answers remembered at most (the oldest go first): a dictionary attack must not grow memory. */
const MAX_ANSWERS = 10_000;
/** A server that could not be reached is not asked again for this long (every RCPT would wait). */
const UNREACHABLE_MS = 60_000;
/** A probe's own limits; its answer is remembered whenever it comes. */
const PROBE_TIMEOUTS: Partial<ClientTimeouts> = { connect: 5_000, greeting: 10_000, command: 10_000 };
/**
 * How long an RCPT waits for a probe (counted from the probe's start, so a second RCPT for the
 * same address does not wait again): a sending client gives up after a few seconds of silence,
 * and an inner server on the same network answers in milliseconds.
 */
const RCPT_WAIT_MS = 3_000;

export interface RecipientVerifierOptions {
  /** Our name for EHLO/LHLO. */
  helo: string;
  now?: () => number;
  timeouts?: Partial<ClientTimeouts>;
  /** How long a question waits for a probe's answer before it is "unknown" (RCPT_WAIT_MS). */
  waitMs?: number;
}

export class RecipientVerifier {
  private readonly answers = new Map<string, { verification: Verification; until: number }>();
  private readonly asking = new Map<string, { answer: Promise<Verification>; startedAt: number }>();
  private readonly unreachable = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly o: RecipientVerifierOptions) {
    this.now = o.now ?? Date.now;
  }

  async verify(server: InnerServer, address: string): Promise<Verification> {
    const hostKey = `${server.lmtp ? "lmtp:" : ""}${server.host}:${server.port}`;
    const key = `${hostKey} ${address.toLowerCase()}`;
    const known = this.answers.get(key);
    if (known && known.until > this.now()) return known.verification;
    const down = this.unreachable.get(hostKey);
    if (down !== undefined && down > this.now()) return { kind: "unknown", why: `${hostKey} unreachable` };
    let probe = this.asking.get(key);
    if (!probe) {
      const answer = this.ask(server, hostKey, address).then((verification) => {
        this.asking.delete(key);
        this.remember(key, verification);
        return verification;
      });
      probe = { answer, startedAt: this.now() };
      this.asking.set(key, probe);
    }
    const waitMs = Math.max(0, probe.startedAt + (this.o.waitMs ?? RCPT_WAIT_MS) - this.now());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<Verification>((resolve) => {
      timer = setTimeout(() => resolve({ kind: "unknown", why: `no answer within ${waitMs} ms` }), waitMs);
    });
    try {
      return await Promise.race([probe.answer, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async ask(server: InnerServer, hostKey: string, address: string): Promise<Verification> {
    let conn: SmtpClientConnection;
    try {
      conn = await connectSmtp({
        host: server.host,
        port: server.port,
        helo: this.o.helo,
        // The probe carries an address, no content; an inner server needs no TLS for it.
        tls: "none",
        lmtp: server.lmtp,
        timeouts: { ...PROBE_TIMEOUTS, ...this.o.timeouts },
      });
    } catch (err) {
      this.unreachable.set(hostKey, this.now() + UNREACHABLE_MS);
      return { kind: "unknown", why: (err as Error).message };
    }
    try {
      const { step, reply } = await conn.probe(address);
      if (step === "rcpt" && reply.code >= 200 && reply.code < 300) return { kind: "accepted" };
      if (step === "rcpt" && reply.code >= 500) return { kind: "refused", reply };
      return { kind: "unknown", why: `${step.toUpperCase()}: ${reply.code} ${reply.text}` };
    } catch (err) {
      return { kind: "unknown", why: (err as Error).message };
    } finally {
      await conn.quit();
    }
  }

  private remember(key: string, verification: Verification): void {
    this.answers.delete(key); // re-inserted last: the Map's order is the eviction order
    this.answers.set(key, { verification, until: this.now() + TTL_MS[verification.kind] });
    for (const oldest of this.answers.keys()) {
      if (this.answers.size <= MAX_ANSWERS) break;
      this.answers.delete(oldest);
    }
  }
}
