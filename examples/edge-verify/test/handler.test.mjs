// The edge handler under Node with the token fixtures minted by the signing
// code (shared/wasm/tests/fixtures/tokens.json): each is forwarded or
// answered 401 exactly as the services decide.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";

import { initSync } from "@constellation/wasm/web";

import { bearerToken, createHandler, upstreamUrl } from "../handler.mjs";

const require = createRequire(import.meta.url);
initSync({ module: readFileSync(require.resolve("@constellation/wasm/web/constellation_wasm_bg.wasm")) });

const fixtures = JSON.parse(
  readFileSync(new URL("../../../shared/wasm/tests/fixtures/tokens.json", import.meta.url), "utf8"),
);

function fx({ jwks = fixtures.jwks } = {}) {
  const seen = { forwarded: [], jwksFetches: 0 };
  const handler = createHandler({
    issuer: fixtures.issuer,
    audience: fixtures.audience,
    now: () => fixtures.now,
    loadJwks: async () => {
      seen.jwksFetches += 1;
      return typeof jwks === "function" ? jwks() : JSON.stringify(jwks);
    },
    forward: async (request, claims) => {
      seen.forwarded.push(claims);
      return Response.json({ path: new URL(request.url).pathname, sub: claims.sub });
    },
  });
  return { handler, seen };
}

const get = (authorization) =>
  new Request("https://edge.example/v1/kv/app/k", authorization ? { headers: { authorization } } : {});

for (const c of fixtures.cases) {
  test(`fixture: ${c.name}`, async () => {
    const { handler, seen } = fx();
    const res = await handler(get(`Bearer ${c.token}`));
    if (c.expect.ok) {
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { path: "/v1/kv/app/k", sub: c.expect.claims.sub });
      assert.deepEqual(seen.forwarded, [c.expect.claims]);
      return;
    }
    assert.equal(seen.forwarded.length, 0);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("content-type"), "application/problem+json");
    if (c.token === "") {
      // `Bearer ` with nothing after it is no token at all.
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="constellation"');
      return;
    }
    assert.deepEqual(await res.json(), {
      type: "urn:constellation:problem:unauthorized",
      title: "Unauthorized",
      status: 401,
      detail: c.expect.message,
    });
    assert.equal(
      res.headers.get("www-authenticate"),
      `Bearer realm="constellation", error="invalid_token", error_description="${c.expect.message.replaceAll('"', "")}"`,
    );
  });
}

test("no token: 401 with the bare challenge", async () => {
  const { handler } = fx();
  for (const auth of [undefined, "Basic dXNlcjpwYXNz", "Bearer", "Bearer    "]) {
    const res = await handler(get(auth));
    assert.equal(res.status, 401, String(auth));
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="constellation"');
    assert.equal((await res.json()).detail, "a bearer access token is required");
  }
});

test("the scheme is case-insensitive, as the services read it", () => {
  assert.equal(bearerToken(get("bearer abc")), "abc");
  assert.equal(bearerToken(get("  BEARER   abc ")), "abc");
  assert.equal(bearerToken(get("Token abc")), null);
});

test("a kid not yet known re-reads the JWKS (a rotation), at most once a minute", async () => {
  const previous = fixtures.cases.find((c) => c.name.includes("previous key"));
  const current = fixtures.cases.find((c) => c.name === "valid");
  const stranger = fixtures.cases.find((c) => c.name.includes("wrong kid"));
  let clock = fixtures.now;
  let fetches = 0;
  const handler = createHandler({
    issuer: fixtures.issuer,
    audience: fixtures.audience,
    now: () => clock,
    // The first copy predates the current key.
    loadJwks: async () => (++fetches === 1 ? { keys: fixtures.jwks.keys.slice(0, 1) } : fixtures.jwks),
    forward: async () => new Response("ok"),
  });
  const status = async (c) => (await handler(get(`Bearer ${c.token}`))).status;
  assert.equal(await status(previous), 200);
  assert.equal(await status(current), 401, "the copy was just read");
  assert.equal(fetches, 1);
  clock += 61;
  assert.equal(await status(current), 200);
  assert.equal(fetches, 2);
  assert.equal(await status(stranger), 401);
  assert.equal(fetches, 2, "no fetch per unknown kid");
});

test("a request goes upstream to the configured origin only, whatever its path", () => {
  const origin = "https://api.internal.example";
  for (const [path, expected] of [
    ["/v1/kv/settings/a?x=1", "https://api.internal.example/v1/kv/settings/a?x=1"],
    ["//evil.example/steal", "https://api.internal.example//evil.example/steal"],
    ["/\\evil.example/steal", "https://api.internal.example//evil.example/steal"],
  ]) {
    const url = upstreamUrl(`https://edge.example${path}`, origin);
    assert.equal(url.origin, origin, path);
    assert.equal(url.href, expected, path);
  }
});

test("no key set to be had: 503 as the services answer it, never 500, never let through", async () => {
  const valid = fixtures.cases.find((c) => c.expect.ok);
  let answer = () => {
    throw new Error("auth is down");
  };
  const { handler, seen } = fx({ jwks: () => answer() });
  for (const broken of [
    () => {
      throw new Error("auth is down");
    },
    () => "<html>a proxy's error page</html>",
  ]) {
    answer = broken;
    const res = await handler(get(`Bearer ${valid.token}`));
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.equal((await res.json()).type, "urn:constellation:problem:unavailable");
  }
  assert.equal(seen.forwarded.length, 0);
  // Once auth answers again, the next request goes through.
  answer = () => JSON.stringify(fixtures.jwks);
  const ok = await handler(get(`Bearer ${valid.token}`));
  assert.equal(ok.status, 200);
  assert.equal(seen.forwarded.length, 1);
});

test("requests arriving during a key fetch share it", async () => {
  const valid = fixtures.cases.find((c) => c.expect.ok);
  let release;
  const gate = new Promise((resolve) => {
    release = resolve;
  });
  const { handler, seen } = fx({ jwks: async () => (await gate, JSON.stringify(fixtures.jwks)) });
  const answers = Promise.all([1, 2, 3].map(() => handler(get(`Bearer ${valid.token}`))));
  release();
  for (const res of await answers) assert.equal(res.status, 200);
  assert.equal(seen.jwksFetches, 1);
});
