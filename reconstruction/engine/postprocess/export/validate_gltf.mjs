// Validate a .glb/.gltf with the Khronos glTF-Validator; prints its JSON report on stdout.
// Usage: node validate_gltf.mjs FILE [MAX_ISSUES]
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "package.json"));
let validator;
try {
  validator = require("gltf-validator");
} catch (error) {
  process.stderr.write("gltf-validator is not installed: run `npm install` at the repository root\n");
  process.exit(3);
}

const file = process.argv[2];
const maxIssues = Number(process.argv[3] || 200);
const bytes = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(bytes, {
  uri: path.basename(file),
  maxIssues,
  externalResourceFunction: (uri) => readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((data) => new Uint8Array(data)),
});
process.stdout.write(JSON.stringify({ validatorVersion: validator.version(), ...report }));
