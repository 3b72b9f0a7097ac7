// Which name servers the resolver asks: POSTERN_DNS_SERVERS when set, else the system's own list
// from /etc/resolv.conf. Parsing is pure; only loadServers touches the file system.
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";

export interface DnsServer {
  host: string;
  port: number;
  family: 4 | 6;
}

export const DNS_PORT = 53;

// glibc reads at most three nameserver lines (MAXNS) and falls back to the local host when there
// is none; doing the same keeps Postern asking exactly what every other program on the box asks.
const MAX_RESOLV_CONF_SERVERS = 3;
const FALLBACK_SERVER: DnsServer = { host: "127.0.0.1", port: DNS_PORT, family: 4 };

/**
 * One server spec: "ip", "ip:port", a bare IPv6 address ("::1", where every colon belongs to the
 * address) or "[v6]:port". Throws on anything else: a resolver needs addresses, not names.
 */
export function parseServer(spec: string): DnsServer {
  const s = spec.trim();
  let host = s;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if (s.indexOf(":") !== -1 && s.indexOf(":") === s.lastIndexOf(":")) {
    // exactly one colon: IPv4 (or a name) with a port; two or more means a bare IPv6 address
    [host, portText] = s.split(":") as [string, string];
  }
  const family = isIP(host.replace(/%.*$/, ""));
  if (family !== 4 && family !== 6) {
    throw new Error(`DNS server "${spec}" is not an IP address with an optional port`);
  }
  if (bracketed && family !== 6) throw new Error(`DNS server "${spec}": brackets are for IPv6 addresses`);
  const port = portText === undefined ? DNS_PORT : /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
  if (port < 1 || port > 65535) {
    throw new Error(`DNS server "${spec}" has an invalid port`);
  }
  return { host, port, family };
}

/** The `nameserver` lines of resolv.conf(5) text, in order; other lines and bad entries are skipped. */
export function parseResolvConf(text: string): DnsServer[] {
  const servers: DnsServer[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [keyword, address] = line.split(/\s+/);
    if (keyword !== "nameserver" || address === undefined) continue;
    // resolv.conf has no port syntax: an entry is an address alone (IPv6 possibly with a %zone)
    const family = isIP(address.replace(/%.*$/, ""));
    if (family !== 4 && family !== 6) continue;
    servers.push({ host: address, port: DNS_PORT, family });
    if (servers.length === MAX_RESOLV_CONF_SERVERS) break;
  }
  return servers;
}

/**
 * The configured servers (config.dnsServers) or, when unset, the system's. A missing or empty
 * resolv.conf means the local host, as in glibc.
 */
export async function loadServers(
  configured: string[] | undefined,
  resolvConfPath = "/etc/resolv.conf",
): Promise<DnsServer[]> {
  if (configured !== undefined && configured.length > 0) return configured.map(parseServer);
  let text = "";
  try {
    text = await readFile(resolvConfPath, "utf8");
  } catch {
    // no resolv.conf: the fallback below
  }
  const servers = parseResolvConf(text);
  return servers.length > 0 ? servers : [FALLBACK_SERVER];
}

/** "host:port", with brackets for IPv6: for log lines and error messages. */
export function formatServer(server: DnsServer): string {
  return server.family === 6 ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}
