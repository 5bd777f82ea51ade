// The token fixtures (minted by the signing code auth uses, see
// shared/wasm/tests/tokens.rs) verify in JavaScript exactly as in the services.
import assert from "node:assert/strict";
import { test } from "node:test";

import { node, tokens, web } from "./load.mjs";

const options = { issuer: tokens.issuer, audience: tokens.audience, now: tokens.now };

for (const [name, load] of [["nodejs", async () => node], ["web", web]]) {
  test(`${name}: every fixture verifies as the services decide`, async (t) => {
    const pkg = await load();
    for (const c of tokens.cases) {
      await t.test(c.name, () => {
        assert.deepEqual(pkg.verifyAccessToken(c.token, tokens.jwks, options), c.expect);
        // The JWKS document as fetched, unparsed.
        const text = JSON.stringify(tokens.jwks);
        assert.deepEqual(pkg.verifyAccessToken(c.token, text, options), c.expect);
      });
    }
  });
}

test("every rejection the services make has a fixture", () => {
  const errors = new Set(tokens.cases.filter((c) => !c.expect.ok).map((c) => c.expect.error));
  for (const code of ["missing", "malformed", "algorithm", "type", "unknown-key", "signature",
    "expired", "not-yet-valid", "issuer", "audience"]) {
    assert.ok(errors.has(code), code);
  }
});

test("time is the caller's: the valid token expires 15 min after it was issued, with 30 s leeway", () => {
  const valid = tokens.cases.find((c) => c.name === "valid");
  const { exp } = valid.expect.claims;
  assert.equal(node.verifyAccessToken(valid.token, tokens.jwks, { ...options, now: exp + 29 }).ok, true);
  const late = node.verifyAccessToken(valid.token, tokens.jwks, { ...options, now: exp + 30 });
  assert.deepEqual(late, { ok: false, error: "expired", message: "the access token has expired" });
});

test("bad arguments throw", () => {
  const token = tokens.cases[0].token;
  assert.throws(() => node.verifyAccessToken(token, "{", options), /jwks/);
  assert.throws(() => node.verifyAccessToken(token, { nokeys: [] }, options), /jwks/);
  assert.throws(() => node.verifyAccessToken(token, tokens.jwks, { ...options, now: undefined }), /now/);
  assert.throws(() => node.verifyAccessToken(token, tokens.jwks, { audience: "a", now: 1 }), /issuer/);
});
