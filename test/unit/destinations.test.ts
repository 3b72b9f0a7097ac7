import { describe, expect, test } from "bun:test";
import { isPublicAddress } from "../../src/net/destinations.ts";

describe("isPublicAddress", () => {
  test.each([
    ["8.8.8.8", true],
    ["2001:4860:4860::8888", true],
    ["::ffff:8.8.8.8", true],
    ["64:ff9b::808:808", true], // NAT64 of 8.8.8.8
    ["127.0.0.1", false],
    ["127.1.2.3", false],
    ["10.0.0.5", false],
    ["172.16.0.1", false],
    ["192.168.1.1", false],
    ["169.254.169.254", false], // cloud metadata
    ["100.64.0.1", false],
    ["0.0.0.0", false],
    ["192.0.2.1", false],
    ["224.0.0.1", false],
    ["255.255.255.255", false],
    ["::1", false],
    ["::", false],
    ["fe80::1", false],
    ["fd00::1", false],
    ["::ffff:127.0.0.1", false],
    ["::ffff:10.0.0.1", false],
    ["64:ff9b::7f00:1", false], // NAT64 of 127.0.0.1
    ["2001:db8::1", false],
    ["not an address", false],
  ])("%s → %p", (ip, expected) => {
    expect(isPublicAddress(ip)).toBe(expected);
  });
});
