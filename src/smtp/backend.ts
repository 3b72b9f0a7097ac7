// The session's questions answered from the directory, the users table and the queue.
import { eq } from "drizzle-orm";
import { hashPassword, verifyPassword } from "../auth/passwords.ts";
import type { Db } from "../db/open.ts";
import { users } from "../db/schema.ts";
import type { Directory } from "../domains/directory.ts";
import { domainOf, patternMatches } from "../mail/address.ts";
import { headerValue, readHeaders } from "../mail/headers.ts";
import { fixUpSubmission } from "../mail/submission.ts";
import type { Enqueuer } from "../queue/enqueue.ts";
import { R } from "./reply.ts";
import { MessageRefused, type SessionBackend } from "./session.ts";

export function createSessionBackend(deps: {
  db: Db;
  directory: Directory;
  enqueuer: Enqueuer;
  hostname: string;
}): SessionBackend {
  const { db, directory, enqueuer, hostname } = deps;
  // Unknown logins are checked against this hash too, so their answer takes as long as a wrong password.
  let decoy: Promise<string> | undefined;

  const findUser = async (address: string) => {
    const [user] = await db.select().from(users).where(eq(users.address, address.toLowerCase()));
    return user;
  };

  return {
    async authenticate(username, password) {
      const user = await findUser(username);
      decoy ??= hashPassword("decoy password for unknown users");
      const ok = await verifyPassword(password, user?.passwordHash ?? (await decoy));
      return user && ok ? user.address : undefined;
    },

    async checkSender(address, ctx) {
      if (!ctx.authUser || address === "") return undefined;
      const user = await findUser(ctx.authUser);
      const sender = address.toLowerCase();
      const allowed = user && [user.address, ...user.maySendAs].some((p) => patternMatches(p, sender));
      return allowed ? undefined : R.senderNotOwned(address);
    },

    async checkRecipient(address, ctx) {
      if (await directory.isLocalDomain(domainOf(address))) {
        const route = await directory.routeFor(address);
        return route ? { ok: true, target: route.target } : { ok: false, reply: R.unknownUser() };
      }
      // Never an open relay: only an authenticated session may send beyond our domains.
      return ctx.authUser ? { ok: true, target: "mx" } : { ok: false, reply: R.relayDenied() };
    },

    async accept(id, envelope, received) {
      let content = received;
      if (envelope.authUser) {
        const user = await findUser(envelope.authUser);
        const fixed = fixUpSubmission(
          content,
          user ? [user.address, ...user.maySendAs] : [],
          hostname,
          new Date(),
        );
        if (!fixed.ok) {
          throw new MessageRefused(
            fixed.problem === "no-from" ? R.noFromHeader() : R.senderNotOwned(fixed.address),
          );
        }
        content = fixed.content;
      }
      const headers = readHeaders(content);
      await enqueuer.enqueue({
        id,
        direction: envelope.authUser ? "outbound" : "inbound",
        mailFrom: envelope.mailFrom,
        helo: envelope.helo,
        clientIp: envelope.remoteIp,
        authUser: envelope.authUser,
        raw: content,
        messageIdHeader: headerValue(headers, "message-id"),
        subject: headerValue(headers, "subject"),
        envid: envelope.mailParams.envid,
        ret: envelope.mailParams.ret,
        deliveries: envelope.recipients.map((r) => ({
          rcpt: r.address,
          target: r.target,
          orcpt: r.params.orcpt,
          notify: r.params.notify?.join(","),
        })),
      });
    },
  };
}
