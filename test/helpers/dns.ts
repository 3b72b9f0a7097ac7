// A tiny authoritative DNS server for tests, in-process on dns-packet: UDP and TCP on one random
// port of 127.0.0.1 (or ::1), a zone given as a plain object, and switches for the failures a
// resolver must live with (truncation, SERVFAIL, REFUSED, slow or silent servers, no EDNS).
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import * as packet from "dns-packet";

export interface ZoneEntry {
  /** TTL of every record of the name (default 300). */
  ttl?: number;
  A?: string[];
  AAAA?: string[];
  MX?: { exchange: string; priority: number }[];
  /** One entry per record: a string (split into 255-octet character-strings) or the strings themselves. */
  TXT?: (string | string[])[];
  PTR?: string[];
  CNAME?: string;
}

/** Owner name (any case, with or without the trailing dot) to its records. */
export type Zone = Record<string, ZoneEntry>;

export interface Behaviour {
  /** Truncate (TC bit, no records) every UDP answer over 512 octets, whatever the query's EDNS size. */
  truncateOver512: boolean;
  servfail: boolean;
  refused: boolean;
  /** Answer FORMERR to queries carrying an OPT record, like a server from before EDNS0. */
  noEdns: boolean;
  /** Wait this long before answering (ms). */
  delayMs: number;
  /** Count queries but never answer. */
  silent: boolean;
  /** Follow CNAMEs inside the zone (default); off, a CNAME is answered alone, as for another zone. */
  chaseCnames: boolean;
}

export interface QueryRecord {
  name: string;
  type: string;
  transport: "udp" | "tcp";
  /** The port the query came from. */
  sourcePort: number;
}

export interface DnsTestServer {
  host: string;
  port: number;
  /** "127.0.0.1:port" or "[::1]:port", as POSTERN_DNS_SERVERS takes it. */
  spec: string;
  zone: Zone;
  behaviour: Behaviour;
  /** Every query received, answered or not. */
  queries: QueryRecord[];
  /** How many queries matched (name and type case-insensitive, either may be left out). */
  count(name?: string, type?: string): number;
  close(): Promise<void>;
}

export interface DnsTestServerOptions extends Partial<Behaviour> {
  host?: "127.0.0.1" | "::1";
  /** SOA minimum and TTL of NXDOMAIN and NODATA answers (default 60). */
  negativeTtl?: number;
}

export async function startDnsServer(zone: Zone, options: DnsTestServerOptions = {}): Promise<DnsTestServer> {
  const host = options.host ?? "127.0.0.1";
  const behaviour: Behaviour = {
    truncateOver512: options.truncateOver512 ?? false,
    servfail: options.servfail ?? false,
    refused: options.refused ?? false,
    noEdns: options.noEdns ?? false,
    delayMs: options.delayMs ?? 0,
    silent: options.silent ?? false,
    chaseCnames: options.chaseCnames ?? true,
  };
  const negativeTtl = options.negativeTtl ?? 60;
  const queries: QueryRecord[] = [];
  const server: DnsTestServer = {
    host,
    port: 0,
    spec: "",
    zone,
    behaviour,
    queries,
    count: (name, type) =>
      queries.filter(
        (q) =>
          (name === undefined || q.name === norm(name)) &&
          (type === undefined || q.type.toUpperCase() === type.toUpperCase()),
      ).length,
    close: async () => {},
  };

  // Returns the answer to send, or undefined for none (silent, or not a query we understand).
  const handle = async (
    message: Buffer,
    transport: "udp" | "tcp",
    sourcePort: number,
  ): Promise<Buffer | undefined> => {
    let query: packet.DecodedPacket;
    try {
      query = packet.decode(message);
    } catch {
      return undefined;
    }
    const question = query.questions?.[0];
    if (question === undefined || query.flag_qr) return undefined;
    queries.push({ name: norm(question.name), type: question.type, transport, sourcePort });
    if (behaviour.delayMs > 0) await Bun.sleep(behaviour.delayMs);
    if (behaviour.silent) return undefined;
    const response = answer(query, server.zone, behaviour, negativeTtl);
    let encoded = packet.encode(response);
    if (transport === "udp") {
      const opt = query.additionals?.find((a) => a.type === "OPT") as packet.OptAnswer | undefined;
      const limit = behaviour.truncateOver512 || !opt ? 512 : Math.max(512, opt.udpPayloadSize);
      if (encoded.length > limit) {
        encoded = packet.encode({
          ...response,
          flags: (response.flags ?? 0) | packet.TRUNCATED_RESPONSE,
          answers: [],
        });
      }
    }
    return encoded;
  };

  const onDatagram = (udp: UdpSocket) => async (message: Buffer, from: { address: string; port: number }) => {
    const reply = await handle(message, "udp", from.port);
    if (reply) udp.send(reply, from.port, from.address);
  };
  const connections = new Set<Socket>();
  const onConnection = (socket: Socket) => {
    connections.add(socket);
    socket.on("close", () => connections.delete(socket));
    socket.on("error", () => {});
    let buffered = Buffer.alloc(0);
    socket.on("data", async (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        const reply = await handle(message, "tcp", socket.remotePort ?? 0);
        if (reply && !socket.destroyed) {
          const length = Buffer.alloc(2);
          length.writeUInt16BE(reply.length);
          socket.write(Buffer.concat([length, reply]));
        }
      }
    });
  };
  const { udp, tcp, port } = await bindBoth(host, onDatagram, onConnection);

  server.port = port;
  server.spec = host === "::1" ? `[::1]:${port}` : `${host}:${port}`;
  let closed: Promise<void> | undefined;
  // once: a test that stops the server early (a dead resolver) leaves it to the cleanup too
  server.close = () => {
    closed ??= (async () => {
      for (const socket of connections) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    })();
    return closed;
  };
  return server;
}

// UDP and TCP on the same port, as a real server has them: a random free UDP port, then TCP on
// it, trying again in the unlikely case that another program holds that TCP port.
async function bindBoth(
  host: string,
  onDatagram: (udp: UdpSocket) => (message: Buffer, from: { address: string; port: number }) => void,
  onConnection: (socket: Socket) => void,
): Promise<{ udp: UdpSocket; tcp: Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const udp = createSocket(host === "::1" ? "udp6" : "udp4");
    udp.on("message", onDatagram(udp));
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(0, host, () => resolve());
    });
    const port = udp.address().port;
    const tcp = createServer(onConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, host, () => resolve());
      });
      return { udp, tcp, port };
    } catch (error) {
      udp.close();
      if (attempt >= 10) throw error;
    }
  }
}

function norm(name: string): string {
  return name.replace(/\.$/, "").toLowerCase();
}

function answer(
  query: packet.DecodedPacket,
  zone: Zone,
  behaviour: Behaviour,
  negativeTtl: number,
): packet.Packet {
  const question = query.questions![0]!;
  const hasOpt = (query.additionals ?? []).some((a) => a.type === "OPT");
  const response = (
    rcode: number,
    answers: packet.Answer[],
    authorities: packet.Answer[] = [],
  ): packet.Packet => ({
    type: "response",
    id: query.id,
    flags: packet.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & packet.RECURSION_DESIRED) | rcode,
    questions: [question],
    answers,
    authorities,
    additionals:
      hasOpt && rcode !== 1 ? [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer] : [],
  });
  if (behaviour.noEdns && hasOpt) return response(1, []);
  if (behaviour.servfail) return response(2, []);
  if (behaviour.refused) return response(5, []);

  const entries = new Map(Object.entries(zone).map(([name, entry]) => [norm(name), entry]));
  const soa: packet.Answer = {
    type: "SOA",
    name: "test",
    ttl: negativeTtl,
    data: {
      mname: "ns.test",
      rname: "hostmaster.test",
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: negativeTtl,
    },
  };
  const answers: packet.Answer[] = [];
  let current = norm(question.name);
  for (let hops = 0; hops < 10; hops++) {
    const entry = entries.get(current);
    if (entry === undefined) break;
    const ttl = entry.ttl ?? 300;
    if (entry.CNAME !== undefined && question.type !== "CNAME") {
      answers.push({ type: "CNAME", name: current, ttl, data: entry.CNAME });
      if (!behaviour.chaseCnames) return response(0, answers);
      current = norm(entry.CNAME);
      continue;
    }
    answers.push(...records(current, question.type, entry, ttl));
    break;
  }
  if (answers.length > 0 && answers.at(-1)!.type === question.type) return response(0, answers);
  // An empty non-terminal (a name with names below it) exists too: NODATA, not NXDOMAIN.
  const exists = [...entries.keys()].some((n) => n === current || n.endsWith(`.${current}`));
  return response(exists ? 0 : 3, answers, [soa]);
}

function records(name: string, type: string, entry: ZoneEntry, ttl: number): packet.Answer[] {
  switch (type) {
    case "A":
    case "AAAA":
    case "PTR":
    case "CNAME": {
      const values =
        type === "CNAME" ? (entry.CNAME === undefined ? [] : [entry.CNAME]) : (entry[type] ?? []);
      return values.map((data) => ({ type, name, ttl, data }) as packet.Answer);
    }
    case "MX":
      return (entry.MX ?? []).map((mx) => ({
        type: "MX",
        name,
        ttl,
        data: { preference: mx.priority, exchange: mx.exchange },
      }));
    case "TXT":
      // fresh Buffers each time: dns-packet's TXT encoder rewrites the array it is given
      return (entry.TXT ?? []).map((txt) => ({
        type: "TXT",
        name,
        ttl,
        data: (typeof txt === "string" ? chunks(txt) : txt).map((s) => Buffer.from(s)),
      }));
    default:
      return [];
  }
}

function chunks(value: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts.length > 0 ? parts : [""];
}
