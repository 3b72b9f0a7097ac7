// swaks, a real SMTP client, as a subprocess. Returns its transcript (stdout).

export interface SwaksOptions {
  port: number;
  from: string;
  to: string;
  /** The whole message (headers and body); swaks makes one up when left out. */
  data?: string;
  extra?: string[];
}

export async function swaks(o: SwaksOptions): Promise<string> {
  const args = [
    "swaks",
    "--server",
    `127.0.0.1:${o.port}`,
    "--from",
    o.from,
    "--to",
    o.to,
    ...(o.extra ?? []),
  ];
  if (o.data !== undefined) args.push("--data", "-");
  const proc = Bun.spawn(args, {
    stdin: o.data === undefined ? "ignore" : new TextEncoder().encode(o.data),
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return out;
}

/** The queue id from swaks' transcript of a 250 after DATA. */
export function queuedId(transcript: string): string | undefined {
  return /250 2\.0\.0 Ok: queued as (\S+)/.exec(transcript)?.[1];
}
