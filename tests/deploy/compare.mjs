// Compare the objects of a kustomize rendering and a Helm rendering:
//   node compare.mjs KUSTOMIZE.yaml HELM.yaml
// Normalised before comparing (and nothing else is ignored):
//   - objects are matched by kind, namespace and name, keys compared sorted;
//   - the Namespace object of the kustomize base is dropped: the chart does
//     not create its release namespace (helm install -n NS);
//   - Helm's own labels on each object's metadata (helm.sh/chart,
//     app.kubernetes.io/managed-by, app.kubernetes.io/instance,
//     app.kubernetes.io/version) are dropped.
// Exit 0 when equal; 1 with one line per difference.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), "package.json"));
const YAML = require("yaml");
const HELM_LABELS = ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];

const [kf, hf] = process.argv.slice(2);
if (!hf) {
  console.error("usage: node compare.mjs KUSTOMIZE.yaml HELM.yaml");
  process.exit(2);
}
function load(f) {
  const m = new Map();
  for (const d of YAML.parseAllDocuments(fs.readFileSync(f, "utf8"), { version: "1.1" })) {
    if (d.errors.length) {
      console.error(`${f}: YAML: ${d.errors[0].message}`);
      process.exit(2);
    }
    const o = d.toJS();
    if (!o) continue;
    const id = `${o.kind}/${o.metadata?.namespace ? o.metadata.namespace + "/" : ""}${o.metadata?.name}`;
    if (m.has(id)) {
      console.error(`${f}: ${id} twice`);
      process.exit(1);
    }
    m.set(id, o);
  }
  return m;
}
const k = load(kf);
const h = load(hf);
for (const [id, o] of k) if (o.kind === "Namespace") k.delete(id);
for (const o of h.values()) {
  const l = o.metadata?.labels;
  if (!l) continue;
  for (const x of HELM_LABELS) delete l[x];
  if (!Object.keys(l).length) delete o.metadata.labels;
}

const diffs = [];
function cmp(a, b, p) {
  if (a === b) return;
  const ta = Array.isArray(a) ? "array" : a === null ? "null" : typeof a;
  const tb = Array.isArray(b) ? "array" : b === null ? "null" : typeof b;
  if (ta !== tb) return diffs.push(`${p}: kustomize ${JSON.stringify(a)}, helm ${JSON.stringify(b)}`);
  if (ta === "array") {
    if (a.length !== b.length) diffs.push(`${p}: kustomize has ${a.length} items, helm ${b.length}`);
    for (let i = 0; i < Math.min(a.length, b.length); i++) cmp(a[i], b[i], `${p}[${i}]`);
  } else if (ta === "object") {
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      if (!(key in a)) diffs.push(`${p}.${key}: only in helm: ${JSON.stringify(b[key])}`);
      else if (!(key in b)) diffs.push(`${p}.${key}: only in kustomize: ${JSON.stringify(a[key])}`);
      else cmp(a[key], b[key], `${p}.${key}`);
    }
  } else {
    diffs.push(`${p}: kustomize ${JSON.stringify(a)}, helm ${JSON.stringify(b)}`);
  }
}
for (const id of [...new Set([...k.keys(), ...h.keys()])].sort()) {
  if (!h.has(id)) diffs.push(`${id}: only in kustomize`);
  else if (!k.has(id)) diffs.push(`${id}: only in helm`);
  else cmp(k.get(id), h.get(id), id);
}
for (const d of diffs) console.log(`DIFFERS ${d}`);
if (diffs.length) {
  console.log(`compare: ${diffs.length} difference(s) between ${kf} and ${hf}`);
  process.exit(1);
}
console.log(`compare: ${k.size} object(s) equal in ${kf} and ${hf}`);
