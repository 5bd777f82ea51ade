// A fetch handler in the shape Cloudflare Workers and Deno serve
// (`fetch(request) -> Response`): it lets a request through to `forward` only
// with a valid Constellation access token, verified here with the services'
// own rules (@constellation/wasm) against auth's JWKS, so the edge never calls
// auth per request. Anything else gets the 401 problem+json the API answers.
//
// The origin still verifies the token itself (every protected route does):
// this turns bad tokens away early; it grants nothing.
import { verifyAccessToken } from "@constellation/wasm/web";

const REALM = 'Bearer realm="constellation"';
/** How long a fetched JWKS is used before it is fetched again (seconds). */
const JWKS_MAX_AGE = 300;
/** At most one extra fetch per this many seconds for a `kid` not yet known (a rotation). */
const JWKS_REFRESH_INTERVAL = 60;

/** The token of an `Authorization: Bearer <token>` header, as shared/web reads it. */
export function bearerToken(request) {
  const value = request.headers.get("authorization");
  if (value === null) return null;
  const [scheme, ...rest] = value.trim().split(" ");
  const token = rest.join(" ").replace(/^ +/, "");
  return scheme.toLowerCase() === "bearer" && token !== "" ? token : null;
}

/** The API's 401: no token (`description` undefined) or a rejected one. */
export function unauthorized(description) {
  const detail = description ?? "a bearer access token is required";
  const safe = (s) => [...s].filter((c) => c >= " " && c <= "~" && c !== '"' && c !== "\\").join("");
  const challenge = description === undefined
    ? REALM
    : `${REALM}, error="invalid_token", error_description="${safe(description)}"`;
  const body = {
    type: "urn:constellation:problem:unauthorized",
    title: "Unauthorized",
    status: 401,
    detail,
  };
  return new Response(JSON.stringify(body), {
    status: 401,
    headers: { "content-type": "application/problem+json", "www-authenticate": challenge },
  });
}

/** The API's 503 when a dependency is down: here, the JWKS could not be had. */
export function unavailable() {
  const body = {
    type: "urn:constellation:problem:unavailable",
    title: "Service unavailable",
    status: 503,
  };
  return new Response(JSON.stringify(body), {
    status: 503,
    headers: { "content-type": "application/problem+json", "retry-after": "1" },
  });
}

/**
 * The handler. `loadJwks()` fetches the key set (text or object);
 * `forward(request, claims)` answers an authenticated request; `now()` is
 * the time in Unix seconds. When the key set cannot be fetched (or is not a
 * key set), a request is answered 503 as the services answer it, never 500
 * and never let through; the last good set keeps serving while a refresh
 * fails, and requests arriving during a fetch share it.
 */
export function createHandler({ loadJwks, forward, issuer, audience, now = () => Date.now() / 1000 }) {
  let jwks = null;
  let fetchedAt = -Infinity;
  let pending = null;
  const refresh = () => {
    pending ??= (async () => {
      try {
        jwks = await loadJwks();
        fetchedAt = now();
      } finally {
        pending = null;
      }
    })();
    return pending;
  };
  const keys = async (force) => {
    const t = now();
    const stale = t - fetchedAt > JWKS_MAX_AGE;
    if (jwks === null || stale || (force && t - fetchedAt > JWKS_REFRESH_INTERVAL)) {
      try {
        await refresh();
      } catch (e) {
        // Keep serving the last good set; with none, the caller answers 503.
        if (jwks === null) throw e;
      }
    }
    return jwks;
  };
  const verify = (token, set, options) => {
    try {
      return verifyAccessToken(token, set, options);
    } catch (e) {
      // Not a key set at all: forget it, so the next request fetches again.
      jwks = null;
      throw e;
    }
  };

  return async function fetch(request) {
    const token = bearerToken(request);
    if (token === null) return unauthorized();
    const options = { issuer, audience, now: now() };
    let verified;
    try {
      verified = verify(token, await keys(false), options);
      if (!verified.ok && verified.error === "unknown-key") {
        // Signed by a key published after our copy of the JWKS?
        verified = verify(token, await keys(true), options);
      }
    } catch {
      return unavailable();
    }
    if (!verified.ok) return unauthorized(verified.message);
    return forward(request, verified.claims);
  };
}

/**
 * The upstream URL of a request: `origin` with the request's path and
 * query, and never another host. (`new URL(path, origin)` would take a
 * path such as `//evil.example/x` as a host of its own and make the edge
 * an open proxy for anyone holding a valid token.)
 */
export function upstreamUrl(requestUrl, origin) {
  const from = new URL(requestUrl);
  const to = new URL(origin);
  to.pathname = from.pathname;
  to.search = from.search;
  return to;
}
