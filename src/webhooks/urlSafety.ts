/**
 * Server-side request forgery guard for webhook URLs.
 *
 * A webhook URL is a client telling us where to connect, so it is checked at
 * request time and again at delivery time (DNS answers change):
 *   - https only (http when `allowHttp`, for local development), no credentials;
 *   - every address the host resolves to must be public unicast: loopback,
 *     private, link-local (with the cloud metadata address), CGNAT, multicast,
 *     reserved, unique-local, and IPv4-mapped / NAT64 forms of those are refused,
 *     and so is the rest of the reserved `::/8` (IPv4-compatible `::a.b.c.d` included);
 *   - the caller connects to the address that was checked (see deliver.ts), so
 *     a DNS answer that changes between check and connect cannot reach inside.
 * Hosts on `allowedHosts` skip the address check (a loopback test receiver, an
 * internal service the operator vouches for); the scheme rules still apply.
 */
import ipaddr from "ipaddr.js";
import { lookup } from "node:dns/promises";

export interface UrlPolicy {
  allowHttp: boolean;
  /** Lower-case host names or literal addresses (IPv6 without brackets). */
  allowedHosts: readonly string[];
}

/** Resolves a host name to every address it has (A and AAAA). */
export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);

export class UnsafeUrlError extends Error {
  constructor(
    readonly reason: string,
    /** True when the host did not resolve: worth another try at delivery time. */
    readonly transient = false,
  ) {
    super(reason);
    this.name = "UnsafeUrlError";
  }
}

/** A URL that passed the checks, with the addresses it may be connected to. */
export interface CheckedTarget {
  url: URL;
  /** Host name as written in the URL (IPv6 without brackets). */
  host: string;
  addresses: string[];
}

const MAX_URL_LENGTH = 2048;

/** Human names of the address ranges we refuse (ipaddr.js range names). */
const RANGE_NAMES: Record<string, string> = {
  unspecified: "an unspecified address",
  broadcast: "the broadcast address",
  multicast: "a multicast address",
  linkLocal: "a link-local address (this includes the cloud metadata address)",
  loopback: "a loopback address",
  carrierGradeNat: "a carrier-grade NAT (CGNAT) address",
  private: "a private address",
  reserved: "a reserved or documentation address",
  benchmarking: "a benchmarking address",
  amt: "an AMT relay address",
  as112: "an AS112 address",
  uniqueLocal: "an IPv6 unique-local address",
  discard: "an IPv6 discard-only address",
  "6to4": "a 6to4 tunnel address",
  teredo: "a Teredo tunnel address",
  orchid2: "an ORCHIDv2 address",
  as112v6: "an AS112 address",
  deprecatedSiteLocal: "a deprecated site-local address",
  deprecated: "a deprecated address",
  droneRemoteIdProtocolEntityTags: "a reserved address",
};

/** RFC 8215 local-use NAT64 prefix: translates to whatever IPv4 the local NAT64 chooses. */
const LOCAL_NAT64 = ipaddr.parseCIDR("64:ff9b:1::/48");
/**
 * IPv4-compatible addresses (RFC 4291 2.5.5.1, deprecated): `::a.b.c.d`. ipaddr.js calls
 * them unicast, but stacks that still honour them reach the embedded IPv4 (`::127.0.0.1`
 * is loopback there), so the whole range is refused, public IPv4 included.
 */
const IPV4_COMPATIBLE = ipaddr.parseCIDR("::/96");
/**
 * `::/8` is reserved by the IETF (RFC 4291). Its assigned pieces are judged above (`::`,
 * `::1`, IPv4-mapped, SIIT, NAT64); whatever else of it an address falls in, nothing
 * public lives there.
 */
const IETF_RESERVED_V6 = ipaddr.parseCIDR("::/8");

/**
 * IPv6 text in its canonical hex form. ipaddr.js reads a dotted tail as IPv4-mapped
 * (`::127.0.0.1` as `::ffff:7f00:1`), but it is IPv4-compatible (`::7f00:1`), which is how
 * URL parsers and inet_ntop write it: the WHATWG URL parser canonicalises it correctly.
 */
function canonicalV6(address: string): string {
  if (!address.includes(":")) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/**
 * Why connecting to `address` is unsafe, or null when it is a public unicast
 * address. IPv4 embedded in IPv6 (mapped, SIIT, NAT64) is judged as the IPv4 it reaches.
 */
export function unsafeAddressReason(address: string): string | null {
  if (!ipaddr.isValid(address)) return `${address} is not an IP address`;
  const ip = ipaddr.parse(canonicalV6(address));
  if (ip.kind() === "ipv6") {
    const v6 = ip as ipaddr.IPv6;
    if (v6.match(LOCAL_NAT64)) return `${address} is a local-use NAT64 address`;
    const range = v6.range();
    if (range === "ipv4Mapped" || range === "rfc6145" || range === "rfc6052") {
      const embedded = ipaddr.fromByteArray(v6.toByteArray().slice(12)) as ipaddr.IPv4;
      const inner = unsafeAddressReason(embedded.toString());
      const form = range === "rfc6052" ? "NAT64" : "IPv4-mapped";
      return inner === null ? null : `${address} is the ${form} form of ${embedded.toString()}, ${inner.replace(/^\S+ is /, "")}`;
    }
    if (range === "unicast" && v6.match(IPV4_COMPATIBLE)) {
      const embedded = ipaddr.fromByteArray(v6.toByteArray().slice(12)).toString();
      return `${address} is the IPv4-compatible form of ${embedded} (::/96, deprecated and refused whatever it embeds)`;
    }
    if (range === "unicast" && v6.match(IETF_RESERVED_V6)) return `${address} is in the reserved ::/8 range`;
    return range === "unicast" ? null : `${address} is ${RANGE_NAMES[range] ?? `in the ${range} range`}`;
  }
  const range = ip.range();
  return range === "unicast" ? null : `${address} is ${RANGE_NAMES[range] ?? `in the ${range} range`}`;
}

/** The checks that need no DNS: shape, scheme, credentials. Throws UnsafeUrlError. */
export function parseWebhookUrl(raw: string, policy: UrlPolicy): { url: URL; host: string } {
  if (raw.length > MAX_URL_LENGTH) throw new UnsafeUrlError(`the URL is longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeUrlError("not an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new UnsafeUrlError(`scheme ${url.protocol} is not allowed; use https`);
  if (url.protocol === "http:" && !policy.allowHttp) throw new UnsafeUrlError("http is not allowed; use https");
  if (url.username !== "" || url.password !== "") throw new UnsafeUrlError("credentials in the URL are not allowed");
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (host === "") throw new UnsafeUrlError("the URL has no host");
  return { url, host };
}

/**
 * Every check: shape, then each resolved address (unless the host is allowed).
 * Returns the addresses to connect to; throws UnsafeUrlError with the reason.
 */
export async function checkWebhookUrl(raw: string, policy: UrlPolicy, resolve: Resolver = systemResolver): Promise<CheckedTarget> {
  const { url, host } = parseWebhookUrl(raw, policy);
  let addresses: string[];
  if (ipaddr.isValid(host)) addresses = [host];
  else {
    try {
      addresses = await resolve(host);
    } catch (error) {
      throw new UnsafeUrlError(`host ${host} does not resolve (${(error as { code?: string }).code ?? "lookup failed"})`, true);
    }
    if (addresses.length === 0) throw new UnsafeUrlError(`host ${host} has no addresses`, true);
  }
  if (!policy.allowedHosts.includes(host)) {
    for (const address of addresses) {
      const reason = unsafeAddressReason(address);
      if (reason !== null)
        throw new UnsafeUrlError(host === address ? reason : `host ${host} resolves to ${reason.replace(/^(\S+) is /, "$1, which is ")}`);
    }
  }
  return { url, host, addresses };
}
