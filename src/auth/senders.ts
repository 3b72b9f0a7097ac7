// What a login may do as a sender, in one place for users and keys: the From patterns it may use
// and its send quota (its own limit, else POSTERN_SEND_LIMIT_PER_HOUR).
import { eq } from "drizzle-orm";
import type { Db } from "../db/open.ts";
import { users } from "../db/schema.ts";
import { quotaOf, type SendQuota } from "../queue/quotas.ts";
import { type ApiKey, findKey, isKeyName, keyMaySendAs } from "./keys.ts";

export interface SenderRights {
  maySendAs: string[];
  quota: SendQuota | undefined;
}

export function keyRights(key: ApiKey, defaultLimit: number): SenderRights {
  return { maySendAs: keyMaySendAs(key), quota: quotaOf(`key:${key.name}`, key.limitPerHour, defaultLimit) };
}

/** The rights of a login (a user's address, or a key's name); undefined when there is no such login. */
export async function senderRights(
  db: Db,
  login: string,
  defaultLimit: number,
): Promise<SenderRights | undefined> {
  if (isKeyName(login)) {
    const key = await findKey(db, login);
    return key && keyRights(key, defaultLimit);
  }
  const [user] = await db.select().from(users).where(eq(users.address, login.toLowerCase()));
  return (
    user && {
      maySendAs: [user.address, ...user.maySendAs],
      quota: quotaOf(`user:${user.address}`, user.limitPerHour, defaultLimit),
    }
  );
}
