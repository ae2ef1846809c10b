// Write a broken copy of rendered objects, for the tests that show each
// validator failing (t_deploy_broken.sh):
//   node mutate.mjs IN OUT KIND/NAME set|delete PATH [JSON]
// PATH is dot-separated, numbers index arrays: spec.template.spec.containers.0.name
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), "package.json"));
const YAML = require("yaml");
const [inp, out, id, op, p, val] = process.argv.slice(2);
if (!p || !["set", "delete"].includes(op) || (op === "set" && val === undefined)) {
  console.error("usage: node mutate.mjs IN OUT KIND/NAME set|delete PATH [JSON]");
  process.exit(2);
}
const objs = YAML.parseAllDocuments(fs.readFileSync(inp, "utf8"), { version: "1.1" }).map((d) => d.toJS()).filter((o) => o);
const target = objs.find((o) => `${o.kind}/${o.metadata?.name}` === id);
if (!target) {
  console.error(`mutate: no ${id} in ${inp}`);
  process.exit(1);
}
const keys = p.split(".");
let node = target;
for (const k of keys.slice(0, -1)) {
  if (node[k] === undefined || node[k] === null || typeof node[k] !== "object") {
    console.error(`mutate: ${id} has no ${p}`);
    process.exit(1);
  }
  node = node[k];
}
const last = keys[keys.length - 1];
if (op === "delete") {
  if (!(last in node)) {
    console.error(`mutate: ${id} has no ${p} to delete`);
    process.exit(1);
  }
  delete node[last];
} else {
  node[last] = JSON.parse(val);
}
fs.writeFileSync(out, objs.map((o) => YAML.stringify(o, { version: "1.1" })).join("---\n"));
