// Parses one SMTP command line (without its CRLF) into a typed command. Pure: no state, no I/O.
// Syntax errors come back as the reply to send, so the session never guesses at codes.
import { R, type Reply } from "./reply.ts";

export type MailParams = {
  size?: number;
  body?: "7BIT" | "8BITMIME";
  smtputf8?: boolean;
  ret?: "FULL" | "HDRS";
  envid?: string;
};

export type RcptParams = {
  notify?: ("NEVER" | "SUCCESS" | "FAILURE" | "DELAY")[];
  orcpt?: string;
};

export type Command =
  | { verb: "EHLO" | "HELO"; domain: string }
  | { verb: "MAIL"; address: string; params: MailParams }
  | { verb: "RCPT"; address: string; params: RcptParams }
  | { verb: "DATA" | "RSET" | "NOOP" | "QUIT" | "STARTTLS" | "HELP" }
  | { verb: "VRFY"; argument: string }
  | { verb: "BDAT"; size: number; last: boolean }
  | { verb: "AUTH"; mechanism: string; initialResponse: string | undefined };

export type Parsed = { ok: true; command: Command } | { ok: false; reply: Reply };

const fail = (reply: Reply): Parsed => ({ ok: false, reply });
const ok = (command: Command): Parsed => ({ ok: true, command });

// RFC 5321 4.1.2 Domain / address-literal, leniently sized. Labels are joined by required dots
// (one optional at the end): with optional inner dots a bad name backtracks exponentially.
const LABEL = "[A-Za-z0-9\\u0080-\\uffff](?:[A-Za-z0-9\\u0080-\\uffff-]*[A-Za-z0-9\\u0080-\\uffff])?";
const DOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);
const ADDRESS_LITERAL = /^\[(IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]$/;
const DOT_ATOM_LOCAL =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
const QUOTED_LOCAL = /^"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x20-\x7e])*"$/;
const XTEXT = /^([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/;
/** RFC 5322 atom (atext only): what RFC 3461 allows as ORCPT's addr-type. */
export const ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$/;
const NO_ARGS = new Set(["DATA", "RSET", "QUIT", "STARTTLS"]);

export function isValidDomain(domain: string): boolean {
  return domain.length <= 255 && (DOMAIN.test(domain) || ADDRESS_LITERAL.test(domain));
}

/** `local@domain` as RFC 5321 Mailbox; returns the address or undefined. */
export function parseMailbox(text: string): string | undefined {
  const at = text.lastIndexOf("@");
  if (at <= 0 || at === text.length - 1) return undefined;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (!DOT_ATOM_LOCAL.test(local) && !QUOTED_LOCAL.test(local)) return undefined;
  if (!isValidDomain(domain) || local.length > 64) return undefined;
  return text;
}

/** Index of the `>` ending the path; one inside a quoted local part does not count. */
function closingBracket(text: string): number {
  let quoted = false;
  for (let i = 1; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (c === ">" && !quoted) return i;
  }
  return -1;
}

/** Splits `<path> params` after `FROM:` / `TO:`; source routes (`<@a,@b:x@y>`) are dropped (RFC 5321 C). */
function parsePath(rest: string, allowNull: boolean): { address: string; params: string[] } | Reply {
  const text = rest.trimStart();
  if (!text.startsWith("<")) return R.badSyntax("Syntax: angle brackets required around the address");
  const close = closingBracket(text);
  if (close < 0) return R.badSyntax("Syntax: missing '>'");
  let inner = text.slice(1, close);
  const after = text.slice(close + 1);
  if (after !== "" && !after.startsWith(" ")) return R.badSyntax("Syntax: space required after the address");
  const params = after.split(" ").filter(Boolean);
  if (inner === "") {
    return allowNull ? { address: "", params } : R.badSyntax("Syntax: empty address not allowed here");
  }
  if (inner.startsWith("@")) {
    const colon = inner.indexOf(":");
    if (colon < 0) return R.badSyntax("Syntax: bad source route");
    inner = inner.slice(colon + 1);
  }
  const address = parseMailbox(inner);
  if (address === undefined) return R.badSyntax(`Syntax: bad address <${inner}>`);
  return { address, params };
}

function splitParam(param: string): [string, string | undefined] {
  const eq = param.indexOf("=");
  return eq < 0 ? [param.toUpperCase(), undefined] : [param.slice(0, eq).toUpperCase(), param.slice(eq + 1)];
}

function parseMailParams(params: string[]): MailParams | Reply {
  const out: MailParams = {};
  for (const p of params) {
    const [key, value] = splitParam(p);
    switch (key) {
      case "SIZE":
        if (!value || !/^\d{1,15}$/.test(value)) return R.badSyntax("Syntax: SIZE=<number>");
        out.size = Number(value);
        break;
      case "BODY":
        if (value?.toUpperCase() === "7BIT" || value?.toUpperCase() === "8BITMIME") {
          out.body = value.toUpperCase() as "7BIT" | "8BITMIME";
        } else return R.badParameter("Error: BODY must be 7BIT or 8BITMIME");
        break;
      case "SMTPUTF8":
        if (value !== undefined) return R.badParameter("Error: SMTPUTF8 takes no value");
        out.smtputf8 = true;
        break;
      case "RET":
        if (value?.toUpperCase() !== "FULL" && value?.toUpperCase() !== "HDRS") {
          return R.badParameter("Error: RET must be FULL or HDRS");
        }
        out.ret = value.toUpperCase() as "FULL" | "HDRS";
        break;
      case "ENVID":
        if (!value || value.length > 100 || !XTEXT.test(value))
          return R.badParameter("Error: bad ENVID (xtext)");
        out.envid = value;
        break;
      case "AUTH":
        break; // RFC 4954 5: accepted and not relayed on; we add our own trust decisions.
      default:
        return R.badParameter(`Error: unsupported MAIL parameter ${key}`);
    }
  }
  return out;
}

function parseRcptParams(params: string[]): RcptParams | Reply {
  const out: RcptParams = {};
  for (const p of params) {
    const [key, value] = splitParam(p);
    switch (key) {
      case "NOTIFY": {
        const items = (value ?? "").toUpperCase().split(",");
        const valid = ["NEVER", "SUCCESS", "FAILURE", "DELAY"];
        if (!items.every((i) => valid.includes(i)) || (items.includes("NEVER") && items.length > 1)) {
          return R.badParameter("Error: NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY");
        }
        out.notify = items as RcptParams["notify"];
        break;
      }
      case "ORCPT": {
        const semi = value?.indexOf(";") ?? -1;
        if (!value || semi <= 0 || !XTEXT.test(value.slice(semi + 1)) || value.length > 500) {
          return R.badParameter("Error: ORCPT must be addr-type;xtext");
        }
        // The type travels to the next hop as it is: anything but an atom could end the command
        // line there (a bare CR to a server that splits on it) or break its parser.
        if (!ATOM.test(value.slice(0, semi))) return R.badSyntax("Error: ORCPT addr-type must be an atom");
        out.orcpt = value;
        break;
      }
      default:
        return R.badParameter(`Error: unsupported RCPT parameter ${key}`);
    }
  }
  return out;
}

/**
 * A control character inside a command line (after its CRLF is taken off), named for the reply;
 * undefined when there is none. A CR, LF, NUL or TAB in a command is never meant: relayed on,
 * it is a second command to any server that splits lines differently (command smuggling).
 */
export function controlCharacter(line: string): string | undefined {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return `0x${c.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return undefined;
}

export function parseCommand(line: string): Parsed {
  const control = controlCharacter(line);
  if (control) return fail(R.badSyntax(`Error: control character ${control} in command`));
  const space = line.indexOf(" ");
  const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  const arg = space < 0 ? "" : line.slice(space + 1);
  switch (verb) {
    case "EHLO":
    case "HELO": {
      const domain = arg.trim();
      if (!domain) return fail(R.badSyntax(`Syntax: ${verb} hostname`));
      if (!isValidDomain(domain.split(" ")[0]!))
        return fail(R.badSyntax(`Syntax: ${verb}: invalid hostname`));
      return ok({ verb, domain: domain.split(" ")[0]! });
    }
    case "MAIL":
    case "RCPT": {
      const prefix = verb === "MAIL" ? "FROM:" : "TO:";
      if (arg.slice(0, prefix.length).toUpperCase() !== prefix) {
        return fail(R.badSyntax(`Syntax: ${verb} ${prefix}<address>`));
      }
      const path = parsePath(arg.slice(prefix.length), verb === "MAIL");
      if ("code" in path) return fail(path);
      if (verb === "MAIL") {
        const params = parseMailParams(path.params);
        return "code" in params ? fail(params) : ok({ verb, address: path.address, params });
      }
      const params = parseRcptParams(path.params);
      return "code" in params ? fail(params) : ok({ verb, address: path.address, params });
    }
    case "BDAT": {
      const m = /^(\d{1,15})( +LAST)? *$/i.exec(arg);
      if (!m) return fail(R.badSyntax("Syntax: BDAT size [LAST]"));
      return ok({ verb, size: Number(m[1]), last: m[2] !== undefined });
    }
    case "AUTH": {
      const [mechanism, initialResponse, extra] = arg.trim().split(/ +/);
      if (!mechanism || extra !== undefined)
        return fail(R.badSyntax("Syntax: AUTH mechanism [initial-response]"));
      return ok({ verb, mechanism: mechanism.toUpperCase(), initialResponse });
    }
    case "VRFY":
      return ok({ verb, argument: arg });
    case "NOOP":
    case "HELP":
      return ok({ verb });
    case "DATA":
    case "RSET":
    case "QUIT":
    case "STARTTLS":
      if (arg.trim() !== "" && NO_ARGS.has(verb))
        return fail(R.badSyntax(`Syntax: ${verb} takes no arguments`));
      return ok({ verb });
    default:
      return fail(R.unknownCommand());
  }
}
