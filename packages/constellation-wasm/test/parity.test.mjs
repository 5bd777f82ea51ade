// shared/wasm/tests/cases.json against the built package, both builds: the
// Rust suite (shared/wasm/tests/parity.rs) reads the same table.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { node, table, web } from "./load.mjs";

function check(pkg, c) {
  const run = () => pkg[c.call](...c.args);
  if ("throws" in c) {
    assert.throws(run, (e) => e instanceof Error && e.message.includes(c.throws));
    return;
  }
  const got = run();
  if ("returns" in c) {
    assert.deepEqual(got, c.returns);
    return;
  }
  assert.equal(got.ok, c.ok, JSON.stringify(got));
  if (c.ok) {
    if ("value" in c) assert.deepEqual(got.value, c.value);
    return;
  }
  assert.equal(got.problem.type, `urn:constellation:problem:${c.problem.type}`);
  assert.equal(got.problem.field, c.problem.field);
  assert.equal(got.problem.status, 400);
  if ("detail" in c.problem) assert.equal(got.problem.detail, c.problem.detail);
}

for (const [name, load] of [["nodejs", async () => node], ["web", web]]) {
  describe(`the ${name} build answers as cases.json says`, async () => {
    const pkg = await load();
    table.cases.forEach((c, i) => {
      test(`case ${i}: ${c.call}(${JSON.stringify(c.args).slice(1, -1).slice(0, 80)})`, () =>
        check(pkg, c));
    });
  });
}

test("every export is covered by the table or its own test", () => {
  const covered = new Set([...table.cases.map((c) => c.call), "currencies", "verifyAccessToken"]);
  const exported = Object.keys(node).filter((k) => typeof node[k] === "function");
  assert.deepEqual(exported.filter((k) => !covered.has(k)), []);
});

test("currencies lists what parseMoney accepts", () => {
  const all = node.currencies();
  assert.ok(all.length > 100);
  assert.deepEqual(all.find((c) => c.code === "KWD"), { code: "KWD", exponent: 3 });
  for (const { code, exponent } of all) {
    const one = exponent === 0 ? "1" : `0.${"0".repeat(exponent - 1)}1`;
    assert.equal(node.parseMoney(one, code).value?.minor, 1, code);
  }
});

test("money is exact where floats are not", () => {
  // 0.1 + 0.2 !== 0.3 in floating point; the package sums minor units.
  assert.equal(node.sumAmounts(["0.1", "0.2"], "EUR").value.amount, "0.30");
  const many = Array(1000).fill("0.01");
  assert.deepEqual(node.sumAmounts(many, "USD").value, { amount: "10.00", currency: "USD", minor: "1000" });
  assert.equal(node.formatMinor(10n ** 20n, "EUR"), "1000000000000000000.00");
});

test("arguments of the wrong type throw instead of validating as text", () => {
  assert.throws(() => node.validateEmail(undefined), /email: must be a string/);
  assert.throws(() => node.validateSku(42), /sku: must be a string/);
});
