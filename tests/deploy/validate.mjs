// Offline checks of rendered Kubernetes objects (multi-document YAML files).
//
//   node validate.mjs [--only models|types|crds] [--crds DIR] FILE...
//
// Three validators, each run on the objects it knows:
//   models  kubernetes-models + @kubernetes-models/validate: the API's JSON
//           schemas (types, required fields, enums) for built-in kinds, and
//           @kubernetes-models/prometheus-operator's (generated from the
//           operator's CRDs) for PrometheusRule and PodMonitor, whose rule
//           groups also go through `promtool check rules` (PromQL, durations,
//           templates);
//   types   kubernetes-types + tsc --noEmit --strict: every built-in object as
//           a typed object literal, so that an unknown field is an error
//           (the schemas above accept unknown fields); the prometheus-operator
//           kinds likewise, with that package's interfaces;
//   crds    ajv against the openAPIV3Schema of the CRD files in DIR
//           (VolumeSnapshotClass, VolumeSnapshot, VolumeSnapshotContent,
//           SnapshotMetadataService), with unknown fields refused as the API
//           server's strict field validation does.
// An object that no selected validator knows is an error: nothing passes
// unchecked.  Exit 0: all valid; 1: an object is invalid (one line each,
// naming file, kind/name and the path); 2: bad usage or a CRD missing.
// CEL rules (x-kubernetes-validations) are not evaluated: no API server.

import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "package.json"));
const YAML = require("yaml");
const Ajv = require("ajv");

function usage(msg) {
  console.error(`validate: ${msg}`);
  console.error("usage: node validate.mjs [--only models|types|crds] [--crds DIR] FILE...");
  process.exit(2);
}

let only = null;
let crdDir = null;
const files = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--only") {
    only = argv[++i];
    if (!["models", "types", "crds"].includes(only)) usage(`--only '${only}': want models, types or crds`);
  } else if (a === "--crds") {
    crdDir = argv[++i];
    if (!crdDir) usage("--crds needs a directory");
  } else if (a.startsWith("-")) {
    usage(`unknown option '${a}'`);
  } else {
    files.push(a);
  }
}
if (!files.length) usage("no file given");
const use = (v) => only === null || only === v;
if (use("crds") && !crdDir) usage("the CRD schemas are needed: --crds DIR (or --only models|types)");

const CRD_GROUPS = new Set(["snapshot.storage.k8s.io", "cbt.storage.k8s.io", "groupsnapshot.storage.k8s.io"]);
// The Prometheus Operator's kinds: no CRD of theirs here, but typed models.
const MONITORING = "monitoring.coreos.com";
const MONITORING_PKG = "@kubernetes-models/prometheus-operator";

// --- read the objects
const objects = [];
for (const f of files) {
  let docs;
  try {
    docs = YAML.parseAllDocuments(fs.readFileSync(f, "utf8"), { version: "1.1" });
  } catch (e) {
    usage(`${f}: ${e.message}`);
  }
  for (const d of docs) {
    if (d.errors.length) {
      console.error(`${f}: YAML: ${d.errors[0].message}`);
      process.exit(1);
    }
    const o = d.toJS();
    if (o === null || o === undefined) continue;
    objects.push({ file: f, obj: o });
  }
}

const failures = [];
const covered = new Set();
const idOf = (o) => `${o.kind ?? "?"}/${o.metadata?.name ?? "?"}`;
const fail = (e, validator, msg) => failures.push(`${e.file}: ${idOf(e.obj)}: ${validator}: ${msg}`);

function splitApiVersion(av) {
  if (typeof av !== "string" || !av) return null;
  const i = av.lastIndexOf("/");
  return i < 0 ? { group: "", version: av } : { group: av.slice(0, i), version: av.slice(i + 1) };
}

// --- models
if (use("models")) {
  for (const [i, e] of objects.entries()) {
    const gv = splitApiVersion(e.obj.apiVersion);
    if (!gv || CRD_GROUPS.has(gv.group) || typeof e.obj.kind !== "string") continue;
    const mod = gv.group === MONITORING ? `${MONITORING_PKG}/${gv.group}/${gv.version}/${e.obj.kind}`
      : `kubernetes-models/${gv.group ? gv.group + "/" : ""}${gv.version}/${e.obj.kind}`;
    let Model;
    try {
      Model = require(mod)[e.obj.kind];
    } catch {
      continue; // unknown to the models: another validator or "unchecked" below
    }
    covered.add(i);
    try {
      new Model(structuredClone(e.obj)).validate();
    } catch (err) {
      fail(e, "models", err.message.replace(/\n/g, "; "));
    }
    if (gv.group === MONITORING && e.obj.kind === "PrometheusRule") promtoolRules(e);
  }
}

// A PrometheusRule's groups as a rule file, through promtool check rules.
function promtoolRules(e) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-rules-"));
  try {
    const f = path.join(dir, "rules.yaml");
    fs.writeFileSync(f, YAML.stringify({ groups: e.obj.spec?.groups ?? [] }));
    try {
      execFileSync("promtool", ["check", "rules", f], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      const out = ((err.stdout || "") + (err.stderr || "")).trim() || err.message;
      fail(e, "models", `promtool check rules: ${out.replace(/\s*\n\s*/g, "; ")}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// --- types: one .ts file, one tsc run
if (use("types")) {
  const nm = path.join(here, "node_modules");
  const lines = [];
  const lineOf = []; // ts line number (1-based) -> object index
  const push = (s, idx) => {
    for (const l of s.split("\n")) {
      lines.push(l);
      lineOf.push(idx);
    }
  };
  for (const [i, e] of objects.entries()) {
    const gv = splitApiVersion(e.obj.apiVersion);
    if (!gv || CRD_GROUPS.has(gv.group) || typeof e.obj.kind !== "string") continue;
    if (gv.group === MONITORING) {
      const mod = `${MONITORING_PKG}/${gv.group}/${gv.version}/${e.obj.kind}`;
      if (!/^[A-Za-z]+$/.test(e.obj.kind) || !fs.existsSync(path.join(nm, `${mod}.d.ts`))) continue;
      covered.add(i);
      push(`import type { I${e.obj.kind} as T${i} } from "${mod}";`, -1);
      push(`export const o${i}: T${i} = ${JSON.stringify(e.obj, null, 2)};`, i);
      continue;
    }
    const pkg = gv.group ? gv.group.split(".")[0] : "core";
    const dts = path.join(nm, "kubernetes-types", pkg, `${gv.version}.d.ts`);
    if (!fs.existsSync(dts)) continue;
    if (!new RegExp(`export interface ${e.obj.kind} \\{`).test(fs.readFileSync(dts, "utf8"))) continue;
    covered.add(i);
    push(`import type { ${e.obj.kind} as T${i} } from "kubernetes-types/${pkg}/${gv.version}";`, -1);
    push(`export const o${i}: T${i} = ${JSON.stringify(e.obj, null, 2)};`, i);
  }
  if (lines.length) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-tsc-"));
    try {
      fs.writeFileSync(path.join(dir, "objects.ts"), lines.join("\n") + "\n");
      fs.writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            target: "es2020",
            module: "commonjs",
            moduleResolution: "node",
            types: [],
            baseUrl: nm,
            paths: { "kubernetes-types/*": [path.join(nm, "kubernetes-types", "*")] },
          },
          files: ["objects.ts"],
        }),
      );
      let out = "";
      try {
        execFileSync(process.execPath, [path.join(nm, "typescript", "bin", "tsc"), "-p", dir, "--pretty", "false"], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
        });
      } catch (err) {
        out = (err.stdout || "") + (err.stderr || "");
        if (!out.trim()) out = `tsc failed: ${err.message}`;
      }
      for (const l of out.split("\n")) {
        if (!l.trim()) continue;
        const m = /objects\.ts\((\d+),(\d+)\): (.*)$/.exec(l);
        const idx = m ? lineOf[Number(m[1]) - 1] : -1;
        if (idx >= 0) {
          // the line names the field; its key path is the object's JSON up to it
          fail(objects[idx], "types", `${m[3]} (at: ${lines[Number(m[1]) - 1].trim()})`);
        } else if (!/^\s/.test(l)) {
          failures.push(`types: ${l}`);
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

// --- crds
function strictSchema(s) {
  // Kubernetes structural schema -> JSON schema as the API server applies it
  // with strict field validation: unknown fields refused unless preserved.
  if (Array.isArray(s)) return s.map(strictSchema);
  if (s === null || typeof s !== "object") return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === "properties" || k === "patternProperties") {
      out[k] = Object.fromEntries(Object.entries(v).map(([p, ps]) => [p, strictSchema(ps)]));
    } else if (k === "x-kubernetes-validations" || k === "description") {
      // CEL is not evaluated here; descriptions are noise
    } else {
      out[k] = strictSchema(v);
    }
  }
  if (out["x-kubernetes-int-or-string"]) {
    delete out.type;
    out.anyOf = [{ type: "integer" }, { type: "string" }];
  }
  if (out.type === "object" && out.properties && out.additionalProperties === undefined &&
      !out["x-kubernetes-preserve-unknown-fields"]) {
    out.additionalProperties = false;
  }
  return out;
}

// ObjectMeta as a client may write it (the CRD schemas say only "object").
const objectMeta = {
  type: "object",
  additionalProperties: false,
  properties: {
    name: { type: "string", minLength: 1 },
    generateName: { type: "string" },
    namespace: { type: "string" },
    labels: { type: "object", additionalProperties: { type: "string" } },
    annotations: { type: "object", additionalProperties: { type: "string" } },
    finalizers: { type: "array", items: { type: "string" } },
    ownerReferences: { type: "array", items: { type: "object" } },
  },
};

if (use("crds") && crdDir) {
  if (!fs.existsSync(crdDir) || !fs.statSync(crdDir).isDirectory()) usage(`--crds '${crdDir}': no such directory`);
  const crds = new Map(); // "group/version/Kind" -> schema
  for (const f of fs.readdirSync(crdDir).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(crdDir, f), "utf8"), { version: "1.1" })) {
      const c = d.toJS();
      if (!c || c.kind !== "CustomResourceDefinition") continue;
      for (const v of c.spec.versions || []) {
        if (v.served && v.schema?.openAPIV3Schema) crds.set(`${c.spec.group}/${v.name}/${c.spec.names.kind}`, v.schema.openAPIV3Schema);
      }
    }
  }
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
  for (const kw of ["x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-map-type",
                    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-embedded-resource"]) {
    ajv.addKeyword({ keyword: kw, schemaType: ["boolean", "string", "array"] });
  }
  ajv.addFormat("int32", { type: "number", validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat("int64", { type: "number", validate: (n) => Number.isInteger(n) });
  ajv.addFormat("byte", /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/);
  ajv.addFormat("date-time", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/i);
  const compiled = new Map();
  for (const [i, e] of objects.entries()) {
    const gv = splitApiVersion(e.obj.apiVersion);
    if (!gv || !CRD_GROUPS.has(gv.group)) continue;
    const key = `${gv.group}/${gv.version}/${e.obj.kind}`;
    const schema = crds.get(key);
    if (!schema) {
      fail(e, "crds", `no CRD in ${crdDir} serves ${key}`);
      covered.add(i);
      continue;
    }
    covered.add(i);
    if (!compiled.has(key)) {
      const s = strictSchema(schema);
      s.properties = { ...s.properties, metadata: objectMeta };
      s.required = [...new Set([...(s.required || []), "apiVersion", "kind", "metadata"])];
      compiled.set(key, ajv.compile(s));
    }
    const validate = compiled.get(key);
    if (!validate(e.obj)) {
      for (const err of validate.errors) {
        const extra = err.params?.additionalProperty ? ` '${err.params.additionalProperty}'` :
          err.params?.allowedValues ? ` ${JSON.stringify(err.params.allowedValues)}` : "";
        fail(e, "crds", `${err.instancePath || "/"} ${err.message}${extra}`);
      }
    }
  }
}

// Nothing in a selected validator's domain passes unchecked: built-in kinds
// belong to models and types, the CRD groups to crds.
for (const [i, e] of objects.entries()) {
  const gv = splitApiVersion(e.obj.apiVersion);
  const crd = gv !== null && CRD_GROUPS.has(gv.group);
  const mine = only === null || (only === "crds" ? crd : !crd);
  if (mine && !covered.has(i)) fail(e, only ?? "all", `no validator knows ${e.obj.apiVersion} ${e.obj.kind}`);
}

for (const f of failures) console.log(`INVALID ${f}`);
const n = only === null ? objects.length : covered.size;
if (failures.length) {
  console.log(`validate: ${failures.length} problem(s) in ${n} object(s)${only ? ` (${only})` : ""}`);
  process.exit(1);
}
console.log(`validate: ${n} object(s) valid${only ? ` (${only})` : ""}`);
