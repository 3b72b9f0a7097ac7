// https://mta-sts.DOMAIN/.well-known/mta-sts.txt for each local domain with a policy (RFC 8461
// 3.3): the policy as text/plain with status 200, anything else 404. No redirects, no other pages.
import { type HostedMode, hostedPolicy } from "../mta-sts/hosted.ts";

const PATH = "/.well-known/mta-sts.txt";

export function mtaStsSite(o: {
  /** The mode of a local domain's policy; undefined for a domain that is not ours. */
  modeOf(domain: string): Promise<HostedMode | undefined>;
  mailHost: string;
}): (req: Request) => Promise<Response> {
  const notFound = () =>
    new Response("not found\n", { status: 404, headers: { "content-type": "text/plain" } });
  return async (req) => {
    const host = (req.headers.get("host") ?? "").toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
    if ((req.method !== "GET" && req.method !== "HEAD") || new URL(req.url).pathname !== PATH)
      return notFound();
    if (!host.startsWith("mta-sts.")) return notFound();
    const mode = await o.modeOf(host.slice("mta-sts.".length));
    const policy = mode && hostedPolicy(mode, o.mailHost);
    if (!policy) return notFound();
    return new Response(policy.text, {
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "max-age=300" },
    });
  };
}
