// Logins whose password was verified lately, so that a client logging in again and again (a
// connection per message, as many apps send) is not charged an argon2id verification each time:
// ~150 ms of CPU, which made a connection-per-message submitter run at 4 msg/s on 2 cores. What
// Dovecot's auth_cache does. Only successes are kept: a wrong password always costs the full hash,
// so guessing stays as slow as before. An entry holds only while the stored hash is the one it was
// verified against, so a changed password or a removed user takes effect at once; the password
// itself is not kept, only an HMAC of it under a key that lives and dies with the process.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

interface Entry {
  storedHash: string;
  digest: Buffer;
  until: number;
}

export class VerifiedLogins {
  private readonly key = randomBytes(32);
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs = 15 * 60_000,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when `password` was verified for `login` against this very `storedHash` within the TTL. */
  holds(login: string, password: string, storedHash: string): boolean {
    const e = this.entries.get(login);
    if (!e) return false;
    if (e.until <= this.now() || e.storedHash !== storedHash) {
      this.entries.delete(login);
      return false;
    }
    return timingSafeEqual(e.digest, this.digest(password));
  }

  /** `password` was just verified for `login` against `storedHash`. */
  remember(login: string, password: string, storedHash: string): void {
    this.entries.delete(login); // re-inserted last: the oldest entry is the first in the map
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(login, { storedHash, digest: this.digest(password), until: this.now() + this.ttlMs });
  }

  private digest(password: string): Buffer {
    return createHmac("sha256", this.key).update(password).digest();
  }
}
