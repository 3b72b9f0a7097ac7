import { randomInt } from "node:crypto";

const ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"; // no vowels: ids never spell words

/** A queue id: time-ordered (ms since epoch) then random, like Postfix's long queue ids. */
export function newMessageId(now = Date.now()): string {
  let time = "";
  for (let t = now; t > 0; t = Math.floor(t / ALPHABET.length)) time = ALPHABET[t % ALPHABET.length] + time;
  let rand = "";
  for (let i = 0; i < 8; i++) rand += ALPHABET[randomInt(ALPHABET.length)];
  return time + rand;
}
