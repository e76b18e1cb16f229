// The workbench's parameter specs (static/js/params.js) from a request schema: the hub's workbench
// keys place them (`basic` shown, the rest Advanced, each by `x-order`). node --test tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ADVANCED, BASIC, changedParams, paramSpecs } from "../../src/mistral_serve/workbench/static/js/params.js";

/** A small schema in the server's shape; its properties are written out of order on purpose. */
function schema({ basic = ["model", "messages", "temperature", "max_tokens", "stream"], order = true } = {}) {
  const props = {
    seed: { anyOf: [{ type: "integer" }, { type: "null" }], default: null, "x-order": 8 },
    temperature: { type: "number", minimum: 0, maximum: 2, default: 1, description: "Sampling temperature", "x-order": 2 },
    model: { type: "string", const: "m", "x-order": 0 },
    top_p: { type: "number", exclusiveMinimum: 0, maximum: 1, default: 1, "x-order": 5 },
    messages: { type: "array", "x-order": 1 },
    stop: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, maxItems: 4 }, { type: "null" }], default: null, "x-order": 9 },
    max_tokens: { anyOf: [{ type: "integer", minimum: 1 }, { type: "null" }], default: null, "x-order": 3 },
    stream: { type: "boolean", default: false, "x-order": 4 },
    top_k: { type: "integer", minimum: -1, default: 0, "x-order": 6 },
  };
  if (!order) for (const p of Object.values(props)) delete p["x-order"];
  const out = { type: "object", properties: props, required: ["model", "messages"] };
  if (basic) out.basic = basic;
  return out;
}

const names = (specs) => specs.map((s) => s.name);

describe("paramSpecs", () => {
  it("shows the basic fields first and puts the rest in Advanced", () => {
    const specs = paramSpecs(schema());
    assert.deepEqual(names(specs.filter((s) => s.group === BASIC)), ["temperature", "max_tokens"]);
    assert.deepEqual(names(specs.filter((s) => s.group === ADVANCED)), ["top_p", "top_k", "seed", "stop"]);
    assert.deepEqual(names(specs), ["temperature", "max_tokens", "top_p", "top_k", "seed", "stop"]);
  });

  it("orders each group by x-order, not by the order the schema is written in", () => {
    const s = schema({ basic: ["temperature", "seed", "top_k"] });
    s.properties.seed["x-order"] = 1; // seed before temperature now
    assert.deepEqual(names(paramSpecs(s)), ["seed", "temperature", "top_k", "max_tokens", "top_p", "stop"]);
  });

  it("keeps a property without x-order in its schema place, after the ordered ones", () => {
    const s = schema();
    delete s.properties.top_p["x-order"];
    delete s.properties.seed["x-order"];
    assert.deepEqual(names(paramSpecs(s)), ["temperature", "max_tokens", "top_k", "stop", "seed", "top_p"]);
  });

  it("shows everything, in schema order, where the schema has no workbench keys", () => {
    const specs = paramSpecs(schema({ basic: null, order: false }));
    assert.ok(specs.every((s) => s.group === BASIC));
    assert.deepEqual(names(specs), ["seed", "temperature", "top_p", "stop", "max_tokens", "top_k"]);
  });

  it("never makes controls of the fields the workbench sets itself, basic or not", () => {
    const specs = paramSpecs(schema());
    for (const name of ["model", "messages", "stream"]) assert.ok(!names(specs).includes(name), name);
  });

  it("still reads ranges and defaults from the schema", () => {
    const specs = paramSpecs(schema());
    const temperature = specs.find((s) => s.name === "temperature");
    assert.equal(temperature.kind, "range");
    assert.equal(temperature.min, 0);
    assert.equal(temperature.max, 2);
    assert.equal(temperature.help, "Sampling temperature");
    assert.equal(specs.find((s) => s.name === "stop").kind, "strings");
    assert.deepEqual(changedParams(specs, { temperature: 1, top_k: 5, stop: ["END"] }), { top_k: 5, stop: "END" });
  });
});
