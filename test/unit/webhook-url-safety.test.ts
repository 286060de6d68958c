import { describe, expect, test } from "bun:test";
import { checkWebhookUrl, UnsafeUrlError, unsafeAddressReason, type UrlPolicy } from "../../src/webhooks/urlSafety.ts";

const STRICT: UrlPolicy = { allowHttp: false, allowedHosts: [] };
/** A resolver for names the tests make up; real DNS is not reachable from CI. */
const FAKE_DNS: Record<string, string[]> = {
  "public.test": ["93.184.215.14", "2606:4700::1111"],
  "private.test": ["10.0.0.7"],
  "mixed.test": ["93.184.215.14", "192.168.1.20"],
  "metadata.test": ["169.254.169.254"],
  "v6-local.test": ["fd00:ec2::254"],
  // How inet_ntop writes an AAAA answer of ::7f00:1 (ipaddr.js alone would read it as IPv4-mapped).
  "v4-compatible.test": ["::127.0.0.1"],
};
const resolve = async (host: string) => {
  const answer = FAKE_DNS[host];
  if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return answer;
};

async function reasonFor(url: string, policy: UrlPolicy = STRICT): Promise<string | null> {
  try {
    await checkWebhookUrl(url, policy, resolve);
    return null;
  } catch (error) {
    if (error instanceof UnsafeUrlError) return error.reason;
    throw error;
  }
}

/** Each URL and a fragment of the reason it must be refused with. */
const UNSAFE: [string, string][] = [
  ["https://127.0.0.1/hook", "loopback"],
  ["https://127.1.2.3/hook", "loopback"],
  ["https://2130706433/hook", "loopback"], // 127.0.0.1 as one decimal number
  ["https://0x7f.0.0.1/hook", "loopback"], // hex octet
  ["https://0177.0.0.1/hook", "loopback"], // octal octet
  ["https://127.1/hook", "loopback"], // short form
  ["https://[::1]/hook", "loopback"],
  ["https://10.0.0.1/hook", "private"],
  ["https://172.16.5.4/hook", "private"],
  ["https://192.168.0.10/hook", "private"],
  ["https://169.254.169.254/latest/meta-data/", "link-local"], // cloud metadata
  ["https://169.254.1.1/hook", "link-local"],
  ["https://100.64.0.1/hook", "carrier-grade NAT"],
  ["https://100.100.100.200/hook", "carrier-grade NAT"], // Alibaba metadata
  ["https://0.0.0.0/hook", "unspecified"],
  ["https://[::]/hook", "unspecified"],
  ["https://224.0.0.251/hook", "multicast"],
  ["https://[ff02::1]/hook", "multicast"],
  ["https://255.255.255.255/hook", "broadcast"],
  ["https://192.0.2.10/hook", "reserved"],
  ["https://240.0.0.1/hook", "reserved"],
  ["https://198.18.0.1/hook", "reserved"],
  ["https://[fe80::1]/hook", "link-local"],
  ["https://[fc00::1]/hook", "unique-local"],
  ["https://[fd00:ec2::254]/hook", "unique-local"], // AWS IPv6 metadata
  ["https://[::ffff:127.0.0.1]/hook", "IPv4-mapped form of 127.0.0.1"],
  ["https://[::ffff:10.1.2.3]/hook", "IPv4-mapped form of 10.1.2.3"],
  ["https://[::ffff:169.254.169.254]/hook", "IPv4-mapped form of 169.254.169.254"],
  ["https://[64:ff9b::a9fe:a9fe]/hook", "NAT64 form of 169.254.169.254"],
  ["https://[64:ff9b::7f00:1]/hook", "NAT64 form of 127.0.0.1"],
  ["https://[64:ff9b:1::a00:1]/hook", "local-use NAT64"],
  ["https://[2002:7f00:1::1]/hook", "6to4"],
  ["https://[2001:db8::1]/hook", "reserved"],
  // IPv4-compatible (::/96, deprecated): refused whatever IPv4 it embeds, public included.
  ["https://[::127.0.0.1]/hook", "IPv4-compatible form of 127.0.0.1"],
  ["https://[::10.0.0.1]/hook", "IPv4-compatible form of 10.0.0.1"],
  ["https://[::7f00:1]/hook", "IPv4-compatible form of 127.0.0.1"],
  ["https://[::a9fe:a9fe]/hook", "IPv4-compatible form of 169.254.169.254"],
  ["https://[::8.8.8.8]/hook", "IPv4-compatible form of 8.8.8.8"],
  ["https://[::2]/hook", "IPv4-compatible form of 0.0.0.2"],
  // The rest of the IETF-reserved ::/8 outside its assigned pieces.
  ["https://[::1:0:0:1]/hook", "reserved ::/8"],
  ["https://[1::1]/hook", "reserved ::/8"],
  ["https://[ff::1]/hook", "reserved ::/8"],
  ["https://[64:ff9b:2::1]/hook", "reserved ::/8"],
  ["https://private.test/hook", "private.test resolves to 10.0.0.7, which is a private address"],
  ["https://mixed.test/hook", "resolves to 192.168.1.20"], // one bad address is enough
  ["https://metadata.test/hook", "link-local"],
  ["https://v6-local.test/hook", "unique-local"],
  ["https://v4-compatible.test/hook", "v4-compatible.test resolves to ::127.0.0.1, which is the IPv4-compatible form of 127.0.0.1"],
  ["https://nowhere.test/hook", "does not resolve"],
  ["http://public.test/hook", "http is not allowed"],
  ["ftp://public.test/hook", "scheme ftp: is not allowed"],
  ["https://user:secret@public.test/hook", "credentials"],
  ["https://user@public.test/hook", "credentials"],
  ["not a url", "not an absolute URL"],
  [`https://public.test/${"a".repeat(2100)}`, "longer than 2048"],
];

describe("webhook URL safety", () => {
  test(`refuses ${UNSAFE.length} unsafe URLs, each with its reason`, async () => {
    expect(UNSAFE.length).toBeGreaterThanOrEqual(30);
    const results = await Promise.all(UNSAFE.map(async ([url, expected]) => ({ url: url.slice(0, 60), expected, reason: await reasonFor(url) })));
    for (const { url, expected, reason } of results) expect({ url, reason: reason?.includes(expected) ? expected : reason }).toEqual({ url, reason: expected });
  });

  test("accepts https to public addresses, literal or resolved, and returns every checked address", async () => {
    const target = await checkWebhookUrl("https://public.test:8443/hooks?x=1", STRICT, resolve);
    expect(target.host).toBe("public.test");
    expect(target.addresses).toEqual(["93.184.215.14", "2606:4700::1111"]);
    expect(await reasonFor("https://93.184.215.14/hook")).toBeNull();
    expect(await reasonFor("https://[2606:4700::1111]/hook")).toBeNull();
    expect(await reasonFor("https://[::ffff:8.8.8.8]/hook")).toBeNull(); // mapped form of a public address
    expect(await reasonFor("https://[64:ff9b::808:808]/hook")).toBeNull(); // NAT64 of a public address
  });

  test("http only with allowHttp; the allow-list lets a named host be internal, and nothing else", async () => {
    const dev: UrlPolicy = { allowHttp: true, allowedHosts: ["127.0.0.1", "private.test", "::1"] };
    expect(await reasonFor("http://127.0.0.1:8080/hook", dev)).toBeNull();
    expect(await reasonFor("http://[::1]:8080/hook", dev)).toBeNull();
    expect(await reasonFor("https://private.test/hook", dev)).toBeNull();
    expect(await reasonFor("http://127.0.0.2/hook", dev)).toContain("loopback");
    expect(await reasonFor("http://10.0.0.7/hook", dev)).toContain("private"); // the address of an allowed name is not itself allowed
    expect(await reasonFor("http://127.0.0.1:8080/hook", { ...dev, allowHttp: false })).toBe("http is not allowed; use https");
  });

  test("a resolution failure is transient (retried at delivery); an unsafe address is not", async () => {
    const refusal = (url: string) => checkWebhookUrl(url, STRICT, resolve).then(() => null, (e: UnsafeUrlError) => e);
    const failure = (await refusal("https://nowhere.test/"))!;
    const unsafe = (await refusal("https://private.test/"))!;
    expect([failure.transient, unsafe.transient]).toEqual([true, false]);
  });

  test("unsafeAddressReason: public unicast is null, anything that is not an address says so", () => {
    expect(unsafeAddressReason("8.8.8.8")).toBeNull();
    expect(unsafeAddressReason("2606:4700::1111")).toBeNull();
    expect(unsafeAddressReason("example.com")).toBe("example.com is not an IP address");
  });

  test("::/8 is refused except for the pieces judged by the IPv4 they reach, which stay as they were", () => {
    // The forms that embed IPv4 and are still in use keep their rule: public is fine, internal is not.
    expect(unsafeAddressReason("::ffff:8.8.8.8")).toBeNull();
    expect(unsafeAddressReason("::ffff:0:8.8.8.8")).toBeNull();
    expect(unsafeAddressReason("64:ff9b::808:808")).toBeNull();
    expect(unsafeAddressReason("::ffff:127.0.0.1")).toContain("IPv4-mapped form of 127.0.0.1");
    expect(unsafeAddressReason("::1")).toBe("::1 is a loopback address");
    expect(unsafeAddressReason("::")).toBe(":: is an unspecified address");
    // Every other address of ::/96 and ::/8, wherever it is, is refused.
    for (const address of ["::1:2", "::ffff", "::7fff:ffff", "0:0:0:0:0:1::", "0:0:0:1::", "00ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"])
      expect({ address, refused: unsafeAddressReason(address) !== null }).toEqual({ address, refused: true });
    // A zone id is no URL host, so it is classified as written.
    expect(unsafeAddressReason("fe80::1%eth0")).toContain("link-local");
    // Just past ::/8 is ordinary address space again (0100::/64 is the discard prefix, refused by its own rule).
    expect(unsafeAddressReason("2001:4860:4860::8888")).toBeNull();
  });
});
