// Which waiting deliveries go out together. Pure: the scheduler brings what waits and its limits.

export interface Sized {
  /** `size`: bytes of the delivery's message. */
  delivery: { messageId: string; size: number };
}

/**
 * The next group from the oldest waiting deliveries of one destination: up to `maxJobs`, and no
 * more message bytes than `maxBytes`, a message counted once however many of its recipients come
 * along (the courier sends it once for all of them). Always at least one delivery, or a message
 * bigger than the limit would never go.
 */
export function takeGroup(
  waiting: readonly Sized[],
  maxJobs: number,
  maxBytes: number,
): { count: number; bytes: number } {
  const messages = new Set<string>();
  let count = 0;
  let bytes = 0;
  for (const w of waiting) {
    if (count === maxJobs) break;
    const added = messages.has(w.delivery.messageId) ? 0 : w.delivery.size;
    if (count > 0 && bytes + added > maxBytes) break;
    messages.add(w.delivery.messageId);
    count++;
    bytes += added;
  }
  return { count, bytes };
}
