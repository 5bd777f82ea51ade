// The Cloudflare Workers entry (wrangler bundles the .wasm import as a
// WebAssembly.Module). Deno: `import init from "@constellation/wasm/web";
// await init();` instead of initSync, then the same createHandler.
//
// Environment: AUTH_ORIGIN (serves /v1/auth/.well-known/jwks.json),
// UPSTREAM_ORIGIN (where authenticated requests go), AUTH_ISSUER and
// AUTH_AUDIENCE (as the services' AUTH_ISSUER / AUTH_AUDIENCE).
import { initSync } from "@constellation/wasm/web";
import wasm from "@constellation/wasm/web/constellation_wasm_bg.wasm";

import { createHandler, upstreamUrl } from "./handler.mjs";

initSync({ module: wasm });

let handler = null;

export default {
  fetch(request, env) {
    handler ??= createHandler({
      issuer: env.AUTH_ISSUER ?? "constellation",
      audience: env.AUTH_AUDIENCE ?? "constellation-api",
      loadJwks: async () => {
        const res = await fetch(new URL("/v1/auth/.well-known/jwks.json", env.AUTH_ORIGIN));
        if (!res.ok) throw new Error(`JWKS: ${res.status}`);
        return res.text();
      },
      forward: (req) => fetch(new Request(upstreamUrl(req.url, env.UPSTREAM_ORIGIN), req)),
    });
    return handler(request);
  },
};
