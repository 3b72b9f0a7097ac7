// HTTP-01 challenges (RFC 8555 8.3) kept in the database, so that whichever node the CA's request
// reaches answers it; and the port-80 handler that does.
import { eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { acmeChallenges } from "../db/schema.ts";
import type { Http01Publisher } from "./order.ts";

const PREFIX = "/.well-known/acme-challenge/";

export function challengeStore(db: Db): Http01Publisher {
  return {
    async set(token, keyAuthorization) {
      await db
        .insert(acmeChallenges)
        .values({ token, keyAuthorization })
        .onConflictDoUpdate({ target: acmeChallenges.token, set: { keyAuthorization } });
    },
    async remove(token) {
      await db.delete(acmeChallenges).where(eq(acmeChallenges.token, token));
    },
  };
}

/** GET /.well-known/acme-challenge/TOKEN: the key authorization as text; anything else 404. */
export function challengeResponder(db: Db): (req: Request) => Promise<Response> {
  const notFound = () =>
    new Response("not found\n", { status: 404, headers: { "content-type": "text/plain" } });
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" || !path.startsWith(PREFIX)) return notFound();
    const token = path.slice(PREFIX.length);
    if (!/^[A-Za-z0-9_-]{1,200}$/.test(token)) return notFound();
    const [row] = await db.select().from(acmeChallenges).where(eq(acmeChallenges.token, token));
    return row
      ? new Response(row.keyAuthorization, { headers: { "content-type": "text/plain" } })
      : notFound();
  };
}
