import t from 'tap';
import { z } from '../../config-schema/zod.js';
import { toJsonSchema } from '../../config-schema/json-schema.js';
import { policySchema } from '../../config-schema/policy.js';
import { specSchema } from '../../config-schema/oci.js';

t.test('policy schema: strict object of io.hyperbox. keys to strings; defaults is optional', async (t) => {
  t.same(toJsonSchema(policySchema), {
    type: 'object',
    properties: { defaults: { type: 'object', propertyNames: { type: 'string', pattern: '^io\\.hyperbox\\.' }, additionalProperties: { type: 'string' } } },
    additionalProperties: false,
  });
});

t.test('spec subset: passthrough (unknown fields allowed), lossless numbers are JSON numbers', async (t) => {
  const s = toJsonSchema(specSchema) as { required: string[]; additionalProperties?: boolean; properties: Record<string, any> };
  t.same(s.required, ['ociVersion']);
  t.equal(s.additionalProperties, undefined, 'unknown fields are the caller’s and allowed');
  t.same(s.properties.linux.properties.resources.properties.memory.properties.limit, { type: 'number' });
  t.same(s.properties.hooks.properties.poststop.items.properties.path, { type: 'string', pattern: '^\\/' });
});

t.test('a zod type without a mapping is an error, not a silent {}', async (t) => {
  t.throws(() => toJsonSchema(z.date()), /no JSON Schema mapping for ZodDate/);
});
