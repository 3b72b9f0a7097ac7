// Our Standard Webhooks signature against the reference implementation (the standardwebhooks package).
import { describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { newHookSecret, webhookSigner } from "../../src/hooks/signature.ts";

describe("webhook signature", () => {
  test("the reference verifies what we sign, and refuses a changed body or a wrong secret", () => {
    const secret = newHookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const body = JSON.stringify({ id: 7, type: "bounced", rcpt: "ü@example.test" });
    const headers = webhookSigner(secret)("evt_7", new Date(), body);
    expect(headers["webhook-id"]).toBe("evt_7");
    expect(headers["webhook-signature"]).toStartWith("v1,");
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(secret).verify(`${body} `, headers)).toThrow();
    expect(() => new Webhook(newHookSecret()).verify(body, headers)).toThrow();
  });

  test("the same signature as the reference for the same id, time and body", () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const at = new Date(1_700_000_000_000);
    const body = '{"type":"delivered"}';
    expect(webhookSigner(secret)("evt_1", at, body)["webhook-signature"]).toBe(
      new Webhook(secret).sign("evt_1", at, body),
    );
  });
});
