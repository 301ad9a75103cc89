/**
 * The OTLP/HTTP JSON requests hyperbox sends, as the OTLP specification's
 * protobuf JSON mapping defines them (opentelemetry-proto, metrics/v1 and
 * trace/v1): lowerCamelCase field names, 64-bit integers as decimal strings,
 * trace and span ids as hex, enums as numbers. Strict: a misspelt field is
 * an error, since a collector would silently drop it. The exporter's output is
 * checked against these in the tests.
 */
import { z, type ZodType } from './zod.js';

const u64 = z.string().regex(/^\d+$/, 'a 64-bit unsigned integer as a decimal string');
const i64 = z.string().regex(/^-?\d+$/, 'a 64-bit integer as a decimal string');

export type AnyValue = { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number } | { arrayValue: { values: AnyValue[] } } | { kvlistValue: { values: { key: string; value: AnyValue }[] } } | { bytesValue: string };
export const anyValueSchema: ZodType<AnyValue> = z.lazy(() =>
  z.union([
    z.object({ stringValue: z.string() }).strict(),
    z.object({ boolValue: z.boolean() }).strict(),
    z.object({ intValue: i64 }).strict(),
    z.object({ doubleValue: z.number() }).strict(),
    z.object({ arrayValue: z.object({ values: z.array(anyValueSchema) }).strict() }).strict(),
    z.object({ kvlistValue: z.object({ values: z.array(keyValueSchema) }).strict() }).strict(),
    z.object({ bytesValue: z.string() }).strict(),
  ]),
);
export const keyValueSchema: ZodType<{ key: string; value: AnyValue }> = z.lazy(() => z.object({ key: z.string().min(1), value: anyValueSchema }).strict());
const attributes = z.array(keyValueSchema);

const resourceSchema = z.object({ attributes, droppedAttributesCount: z.number().int().nonnegative().optional() }).strict();
const scopeSchema = z.object({ name: z.string(), version: z.string().optional(), attributes: attributes.optional(), droppedAttributesCount: z.number().int().optional() }).strict();

const AGGREGATION_TEMPORALITY = z.union([z.literal(1), z.literal(2)]);

const numberDataPoint = z
  .object({
    attributes,
    startTimeUnixNano: u64,
    timeUnixNano: u64,
    asInt: i64.optional(),
    asDouble: z.number().optional(),
    flags: z.number().int().optional(),
  })
  .strict()
  .refine((p) => (p.asInt === undefined) !== (p.asDouble === undefined), 'a number data point has exactly one of asInt, asDouble');

const histogramDataPoint = z
  .object({
    attributes,
    startTimeUnixNano: u64,
    timeUnixNano: u64,
    count: u64,
    sum: z.number().optional(),
    bucketCounts: z.array(u64),
    explicitBounds: z.array(z.number()),
    min: z.number().optional(),
    max: z.number().optional(),
    flags: z.number().int().optional(),
  })
  .strict()
  .refine((p) => p.bucketCounts.length === p.explicitBounds.length + 1, 'bucketCounts has one more entry than explicitBounds')
  .refine((p) => p.explicitBounds.every((b, i) => i === 0 || b > p.explicitBounds[i - 1]!), 'explicitBounds increase strictly')
  .refine((p) => p.bucketCounts.reduce((a, b) => a + BigInt(b), 0n) === BigInt(p.count), 'bucketCounts add up to count');

const metricSchema = z
  .object({
    name: z.string().min(1),
    description: z.string().optional(),
    unit: z.string().optional(),
    gauge: z.object({ dataPoints: z.array(numberDataPoint) }).strict().optional(),
    sum: z.object({ dataPoints: z.array(numberDataPoint), aggregationTemporality: AGGREGATION_TEMPORALITY, isMonotonic: z.boolean() }).strict().optional(),
    histogram: z.object({ dataPoints: z.array(histogramDataPoint), aggregationTemporality: AGGREGATION_TEMPORALITY }).strict().optional(),
  })
  .strict()
  .refine((m) => [m.gauge, m.sum, m.histogram].filter((d) => d !== undefined).length === 1, 'a metric has exactly one data kind');

export const exportMetricsRequestSchema = z
  .object({
    resourceMetrics: z.array(
      z
        .object({
          resource: resourceSchema,
          scopeMetrics: z.array(z.object({ scope: scopeSchema, metrics: z.array(metricSchema), schemaUrl: z.string().optional() }).strict()),
          schemaUrl: z.string().optional(),
        })
        .strict(),
    ),
  })
  .strict();

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `${bytes} bytes as lowercase hex`).refine((s) => /[^0]/.test(s), 'not all zero');

const spanSchema = z
  .object({
    traceId: hex(16),
    spanId: hex(8),
    traceState: z.string().optional(),
    parentSpanId: z.union([hex(8), z.literal('')]).optional(),
    flags: z.number().int().optional(),
    name: z.string().min(1),
    kind: z.number().int().min(0).max(5),
    startTimeUnixNano: u64,
    endTimeUnixNano: u64,
    attributes,
    droppedAttributesCount: z.number().int().nonnegative().optional(),
    events: z.array(z.object({ timeUnixNano: u64, name: z.string().min(1), attributes, droppedAttributesCount: z.number().int().nonnegative().optional() }).strict()),
    droppedEventsCount: z.number().int().nonnegative().optional(),
    links: z.array(z.unknown()).optional(),
    droppedLinksCount: z.number().int().nonnegative().optional(),
    status: z.object({ message: z.string().optional(), code: z.number().int().min(0).max(2).optional() }).strict(),
  })
  .strict()
  .refine((s) => BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), 'a span ends after it starts');

export const exportTraceRequestSchema = z
  .object({
    resourceSpans: z.array(
      z
        .object({
          resource: resourceSchema,
          scopeSpans: z.array(z.object({ scope: scopeSchema, spans: z.array(spanSchema), schemaUrl: z.string().optional() }).strict()),
          schemaUrl: z.string().optional(),
        })
        .strict(),
    ),
  })
  .strict();

