// Seeded random inputs for the fuzz targets. Each target runs for a time budget: a short one in
// `npm test`, longer with `npm run fuzz` (FUZZ_SECONDS). A failure names its seed, and
// FUZZ_SEED=<seed> replays exactly that input first.

/** xorshift32: small, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number, alphabet?: readonly number[]): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = alphabet ? this.pick(alphabet) : this.int(256);
    return out;
  }
}

/** A copy of `input` with a few random edits: flip, insert, delete, duplicate a slice. */
export function mutate(rng: Rng, input: Uint8Array, interesting: readonly number[] = []): Uint8Array {
  let out = Array.from(input);
  const edits = 1 + rng.int(4);
  for (let e = 0; e < edits; e++) {
    const at = out.length === 0 ? 0 : rng.int(out.length);
    const byte = interesting.length > 0 && rng.int(2) === 0 ? rng.pick(interesting) : rng.int(256);
    switch (rng.int(4)) {
      case 0:
        if (out.length > 0) out[at] = byte;
        break;
      case 1:
        out.splice(at, 0, byte);
        break;
      case 2:
        out.splice(at, 1 + rng.int(3));
        break;
      case 3:
        out = [...out.slice(0, at), ...out.slice(at, at + 1 + rng.int(16)), ...out.slice(at)];
        break;
    }
  }
  return new Uint8Array(out);
}

/** Seconds of fuzzing per target: FUZZ_SECONDS, else a quick pass fit for every test run. */
export const FUZZ_MS = Number(process.env.FUZZ_SECONDS ?? 0.4) * 1000;

/**
 * Runs `check` on seeded inputs until the budget is spent (at least `minRuns` times). A throw
 * becomes an error naming the seed to replay it with.
 */
export function fuzz(name: string, check: (rng: Rng) => void, minRuns = 200): number {
  const replay = process.env.FUZZ_SEED ? [Number(process.env.FUZZ_SEED)] : [];
  const deadline = performance.now() + FUZZ_MS;
  let runs = 0;
  let seed = (Date.now() ^ (name.length * 2654435761)) >>> 0;
  while (replay.length > 0 || runs < minRuns || performance.now() < deadline) {
    let s = replay.shift();
    if (s === undefined) {
      seed = (seed + 0x9e3779b9) >>> 0;
      s = seed;
    }
    try {
      check(new Rng(s));
    } catch (err) {
      throw new Error(`${name}: FUZZ_SEED=${s} fails: ${(err as Error).message}`, { cause: err });
    }
    runs++;
  }
  return runs;
}

export const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");
export const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
