// Python's smtplib, a client that is not ours, from a chosen loopback source address (127.0.0.x):
// what per-IP limits are tested with. Each step's reply comes back as "code text".
const PYTHON = "/usr/bin/python3";

const SCRIPT = `
import json, smtplib, ssl, sys
o = json.loads(sys.argv[1])
out = []
def reply(code, msg):
    out.append("%d %s" % (code, msg.decode("latin1") if isinstance(msg, bytes) else msg))
try:
    ctx = ssl._create_unverified_context()
    s = smtplib.SMTP_SSL("127.0.0.1", o["port"], source_address=(o["source"], 0), context=ctx, timeout=20) if o.get("tls") \\
        else smtplib.SMTP("127.0.0.1", o["port"], source_address=(o["source"], 0), timeout=20)
    s.ehlo("client.test")
    if o.get("user"):
        try:
            # one mechanism, one try: login() would go on to the next mechanism after a 535
            s.user, s.password = o["user"], o["password"]
            code, msg = s.auth("PLAIN", s.auth_plain)
            reply(code, msg)
        except smtplib.SMTPAuthenticationError as e:
            reply(e.smtp_code, e.smtp_error)
        except smtplib.SMTPServerDisconnected:
            out.append("disconnected")
    for _ in range(o.get("mails", 0)):
        code, msg = s.mail(o.get("from", ""))
        reply(code, msg)
        s.rset()
    try:
        s.quit()
    except smtplib.SMTPServerDisconnected:
        pass
except Exception as e:
    out.append("error %s" % e)
print(json.dumps(out))
`;

export interface SmtplibSession {
  port: number;
  /** 127.0.0.x to connect from. */
  source: string;
  /** Implicit TLS (port 465). */
  tls?: boolean;
  user?: string;
  password?: string;
  /** MAIL FROM commands to send (each followed by RSET). */
  mails?: number;
  from?: string;
}

export async function smtplibSession(o: SmtplibSession): Promise<string[]> {
  const proc = Bun.spawn([PYTHON, "-c", SCRIPT, JSON.stringify(o)], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  if (!out.trim()) throw new Error(`smtplib: ${err.trim()}`);
  return JSON.parse(out) as string[];
}
