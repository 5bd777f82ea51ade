#!/usr/bin/env bash
# Builds the package from shared/wasm: the .wasm with the size profile, the
# JavaScript glue and TypeScript declarations for Node (`node/`, CommonJS)
# and for browsers, Deno and Workers (`web/`, an ES module with `init`), then
# `wasm-opt -Oz` and the size budget.
#
# Needs wasm-bindgen at exactly the version Cargo.lock pins (scripts/test
# installs it) and, for the size step, wasm-opt (binaryen): $WASM_OPT, or
# wasm-opt on PATH. Without wasm-opt the package is built unoptimised and
# the budget is not checked, unless REQUIRE_WASM_OPT is set.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# The budget of the optimised .wasm, raw and gzipped (bytes).
MAX_WASM=$((300 * 1024))
MAX_GZIP=$((120 * 1024))

pinned=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [[ $have != "$pinned" ]]; then
    echo "wasm-bindgen $pinned is needed (Cargo.lock), found '${have:-none}':"
    echo "  cargo install wasm-bindgen-cli --version $pinned"
    exit 1
fi

cd "$ROOT"
cargo build -p constellation-wasm --target wasm32-unknown-unknown --profile wasm
wasm="$TARGET/wasm32-unknown-unknown/wasm/constellation_wasm.wasm"

WASM_OPT=${WASM_OPT:-$(command -v wasm-opt || true)}
size() { stat -c %s "$1"; }
gzipped() { gzip -9c "$1" | wc -c; }

for out in node web; do
    rm -rf "${HERE:?}/$out"
    wasm-bindgen --target "${out/node/nodejs}" --out-dir "$HERE/$out" \
        --remove-name-section --remove-producers-section "$wasm"
done
node_wasm=$HERE/node/constellation_wasm_bg.wasm
web_wasm=$HERE/web/constellation_wasm_bg.wasm
raw=$(size "$web_wasm")
raw_gz=$(gzipped "$web_wasm")
if [[ -z $WASM_OPT ]]; then
    if [[ -n ${REQUIRE_WASM_OPT:-} ]]; then
        echo "wasm-opt not found (set WASM_OPT)"
        exit 1
    fi
    echo ".wasm $raw bytes ($raw_gz gzipped); wasm-opt not found, not optimised"
    exit 0
fi
# The features rustc enables for wasm32-unknown-unknown.
optimise() {
    "$WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-reference-types \
        --enable-multivalue "$1" -o "$1.opt"
    mv "$1.opt" "$1"
}
# Both targets get the same module (only the glue differs): optimise it once.
if cmp -s "$node_wasm" "$web_wasm"; then
    optimise "$web_wasm"
    cp "$web_wasm" "$node_wasm"
else
    optimise "$node_wasm"
    optimise "$web_wasm"
fi
for bg in "$node_wasm" "$web_wasm"; do
    opt=$(size "$bg")
    opt_gz=$(gzipped "$bg")
    echo "${bg#"$HERE"/}: $raw bytes ($raw_gz gzipped) -> wasm-opt -Oz $opt bytes ($opt_gz gzipped)"
    if ((opt > MAX_WASM || opt_gz > MAX_GZIP)); then
        echo "over the size budget: at most $MAX_WASM bytes, $MAX_GZIP gzipped"
        exit 1
    fi
done
