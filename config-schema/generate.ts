/** Writes dist/schema/*.schema.json from the zod schemas (run by `make`). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ZodTypeAny } from './zod.js';
import { toJsonSchema } from './json-schema.js';
import { specSchema } from './oci.js';
import { ociStateSchema } from './state.js';
import { hostConfigSchema, policySchema } from './policy.js';
import { planRecordSchema } from './plan.js';
import { profileMetaSchema } from './seccomp-profile.js';
import { seccompSchema } from './oci.js';

const schemas: Record<string, ZodTypeAny> = {
  'config.subset': specSchema,
  'oci-state': ociStateSchema,
  policy: policySchema,
  'host-config': hostConfigSchema,
  plan: planRecordSchema,
  'seccomp-profile': seccompSchema,
  'seccomp-profile-meta': profileMetaSchema,
};

const outDir = process.argv[2] ?? 'dist/schema';
mkdirSync(outDir, { recursive: true });
for (const [name, schema] of Object.entries(schemas)) {
  const doc = { $schema: 'https://json-schema.org/draft/2020-12/schema', title: `hyperbox-runc ${name}`, ...toJsonSchema(schema) };
  writeFileSync(join(outDir, `${name}.schema.json`), JSON.stringify(doc, null, 2) + '\n');
}
