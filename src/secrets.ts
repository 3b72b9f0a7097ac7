// Secrets in settings (the database password, the admin token, the smarthost password) never
// appear in an error message or a log line: a log collector, a terminal recording or a bug report
// would otherwise carry them off.

/** What stands in for a secret. */
export const HIDDEN = "***";

/** The password of every `scheme://user:password@host` in a free text, hidden. */
export function redactUrlPasswords(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@]*@/gi, `$1:${HIDDEN}@`);
}

/**
 * A database URL as an error may show it: everything before the host's "@" hidden (user and
 * password), whatever the URL's shape. A malformed URL is the one most likely to be shown, and a
 * password holding an unencoded "@" or "/" must not leak half of itself.
 */
export function redactDatabaseUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? "";
  const rest = url.slice(scheme.length);
  const at = rest.split("?")[0]!.lastIndexOf("@");
  return at < 0 ? url : `${scheme}${HIDDEN}${rest.slice(at)}`;
}

/** The password inside a database URL, as written and as decoded; none when there is none. */
export function urlPassword(url: string): string[] {
  const rest = url.slice(url.indexOf("://") + 3);
  const userinfo = rest.slice(0, Math.max(0, rest.split("?")[0]!.lastIndexOf("@")));
  const colon = userinfo.indexOf(":");
  const password = colon < 0 ? "" : userinfo.slice(colon + 1);
  if (!password) return [];
  try {
    return [...new Set([password, decodeURIComponent(password)])];
  } catch {
    return [password];
  }
}

/**
 * Replaces every occurrence of the given secrets (and their JSON-escaped spelling, for log lines)
 * and every URL password with HIDDEN. Secrets shorter than 4 characters are not looked for: they
 * would blank out ordinary words, and no setting accepts one that short.
 */
export function redactor(secrets: readonly (string | undefined)[]): (text: string) => string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (!s || s.length < 4) continue;
    forms.add(s);
    forms.add(JSON.stringify(s).slice(1, -1));
  }
  // Longest first, so a secret that contains another is hidden whole.
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = redactUrlPasswords(text);
    for (const f of ordered) out = out.replaceAll(f, HIDDEN);
    return out;
  };
}
