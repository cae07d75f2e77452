// Validates tether's OpenRPC document against the official OpenRPC meta-schema
// (npm `@open-rpc/meta-schema`) with ajv, and checks every `$ref` in it resolves.
// Usage: node openrpc_validate.mjs <server base URL>
// Prints {"status", "valid", "errors", "rejectsBroken", "methods", "dangling"} as JSON.
import Ajv from "ajv";
import metaSchemaPackage from "@open-rpc/meta-schema";
import jsonSchemaPackage from "@json-schema-tools/meta-schema";

const base = process.argv[2];
if (!base) {
  console.error("usage: node openrpc_validate.mjs <server base URL>");
  process.exit(2);
}
const response = await fetch(`${base}/api/openrpc.json`);
const document = await response.json();

// The meta-schemas' own `$schema` URLs name no draft ajv knows; they are draft-07 in
// content. The OpenRPC one refers to the JSON Schema one (for every `schema` member).
const metaSchema = { ...metaSchemaPackage.openrpcDocument };
delete metaSchema.$schema;
// It is referred to both with and without a trailing slash: register it under both.
const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, validateFormats: false });
for (const id of ["https://meta.json-schema.tools", "https://meta.json-schema.tools/"]) {
  const jsonSchema = { ...jsonSchemaPackage.jsonSchema };
  delete jsonSchema.$schema;
  delete jsonSchema.$id;
  ajv.addSchema(jsonSchema, id);
}
const validate = ajv.compile(metaSchema);
const valid = validate(document);
const errors = validate.errors ?? [];
// The validator is not vacuous: the same document with a method missing its name fails.
const broken = structuredClone(document);
delete broken.methods[0].name;
const rejectsBroken = !validate(broken);

const dangling = [];
const walk = (node) => {
  if (Array.isArray(node)) return node.forEach(walk);
  if (node && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string") {
        const name = value.replace("#/components/schemas/", "");
        if (!(document.components?.schemas ?? {})[name]) dangling.push(value);
      } else walk(value);
    }
  }
};
walk(document.methods);
walk(document.components);

console.log(
  JSON.stringify({
    status: response.status,
    valid,
    errors,
    rejectsBroken,
    methods: document.methods.map((m) => m.name),
    dangling,
  }),
);
