// The package under test: the directory in CONSTELLATION_WASM_PKG (where
// scripts/test unpacks what `npm pack` wrote), or this checkout's build.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const dir =
  process.env.CONSTELLATION_WASM_PKG ?? fileURLToPath(new URL("..", import.meta.url));

/** The `nodejs` build (CommonJS). */
export const node = createRequire(join(dir, "package.json"))(join(dir, "node/constellation_wasm.js"));

/** The `web` build (an ES module), initialised with the bytes as a Worker would. */
export async function web() {
  const mod = await import(pathToFileURL(join(dir, "web/constellation_wasm.js")).href);
  mod.initSync({ module: readFileSync(join(dir, "web/constellation_wasm_bg.wasm")) });
  return mod;
}

const shared = fileURLToPath(new URL("../../../shared/wasm/tests/", import.meta.url));
/** The case table the Rust tests read. */
export const table = JSON.parse(readFileSync(join(shared, "cases.json"), "utf8"));
/** The token fixtures the Rust tests mint and check. */
export const tokens = JSON.parse(readFileSync(join(shared, "fixtures/tokens.json"), "utf8"));
