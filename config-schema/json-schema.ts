/**
 * JSON Schema (draft 2020-12) from the zod schemas, for editors and other
 * tools that validate policy.json or config.json. zod 3 has no exporter and
 * zod 4's costs ~50 ms of Node start on the create path, so this walks the few
 * zod types config-schema/ uses.
 */
import type { ZodTypeAny } from './zod.js';

type Schema = Record<string, unknown>;

/** Converts one zod schema; throws on a zod type this project does not use. */
export function toJsonSchema(schema: ZodTypeAny): Schema {
  const def = schema._def as { typeName: string } & Record<string, unknown>;
  switch (def.typeName) {
    case 'ZodString': {
      const out: Schema = { type: 'string' };
      for (const check of (def.checks as { kind: string; value?: unknown }[]) ?? []) {
        if (check.kind === 'startsWith') out.pattern = '^' + String(check.value).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
        if (check.kind === 'min') out.minLength = check.value;
      }
      return out;
    }
    case 'ZodNumber':
      return { type: (def.checks as { kind: string }[]).some((c) => c.kind === 'int') ? 'integer' : 'number' };
    case 'ZodBigInt':
      return { type: 'integer' };
    case 'ZodBoolean':
      return { type: 'boolean' };
    case 'ZodLiteral':
      return { const: def.value };
    case 'ZodEnum':
      return { enum: def.values };
    case 'ZodUnknown':
    case 'ZodAny':
      return {};
    case 'ZodEffects':
      return toJsonSchema(def.schema as ZodTypeAny);
    case 'ZodOptional':
    case 'ZodDefault':
      return toJsonSchema(def.innerType as ZodTypeAny);
    case 'ZodArray':
      return { type: 'array', items: toJsonSchema(def.type as ZodTypeAny) };
    case 'ZodRecord':
      return { type: 'object', propertyNames: toJsonSchema(def.keyType as ZodTypeAny), additionalProperties: toJsonSchema(def.valueType as ZodTypeAny) };
    case 'ZodUnion': {
      // The lossless number union (number | bigint | RawNumber) is one JSON "number".
      const options = (def.options as ZodTypeAny[]).filter((o) => (o._def as { typeName: string }).typeName !== 'ZodEffects');
      const parts = options.map(toJsonSchema);
      if (parts.every((p) => p.type === 'number' || p.type === 'integer')) return { type: 'number' };
      return { anyOf: parts };
    }
    case 'ZodObject': {
      const shape = (schema as unknown as { shape: Record<string, ZodTypeAny> }).shape;
      const properties: Schema = {};
      const required: string[] = [];
      for (const [key, value] of Object.entries(shape)) {
        properties[key] = toJsonSchema(value);
        if (!value.isOptional()) required.push(key);
      }
      const out: Schema = { type: 'object', properties };
      if (required.length) out.required = required;
      if (def.unknownKeys === 'strict') out.additionalProperties = false;
      return out;
    }
    default:
      throw new Error(`config-schema: no JSON Schema mapping for ${def.typeName}`);
  }
}
