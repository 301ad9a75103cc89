/**
 * Where OTLP goes, as the OpenTelemetry exporter specification defines it:
 * OTEL_EXPORTER_OTLP_ENDPOINT is a base to which v1/metrics and v1/traces are
 * appended; OTEL_EXPORTER_OTLP_{METRICS,TRACES}_ENDPOINT are used as they are
 * and win over the base; OTEL_EXPORTER_OTLP_HEADERS holds `key=value` pairs,
 * comma-separated, URL-encoded. The
 * io.hyperbox.trace.otlp annotation is a base like OTEL_EXPORTER_OTLP_ENDPOINT
 * and wins over every variable, since it is the container's own request.
 */
import { HyperboxError } from '../../errors.js';

export interface OtlpEndpoints {
  metrics: string;
  traces: string;
  /** Extra request headers (OTEL_EXPORTER_OTLP_HEADERS). */
  headers: Record<string, string>;
}

function checkUrl(value: string, source: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new HyperboxError('E_ANNOTATION', `bad ${source} value ${JSON.stringify(value)}: expected an http:// or https:// URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new HyperboxError('E_ANNOTATION', `bad ${source} value ${JSON.stringify(value)}: OTLP/HTTP needs an http:// or https:// URL`);
  }
  return url.toString();
}

/** base + "v1/<signal>", with exactly one slash between them. */
export function signalUrl(base: string, signal: 'metrics' | 'traces'): string {
  return base.replace(/\/*$/, '/') + `v1/${signal}`;
}

function parseHeaders(value: string | undefined, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!value) return out;
  for (const pair of value.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    let key: string;
    let val: string;
    try {
      key = decodeURIComponent(pair.slice(0, eq).trim());
      val = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      key = '';
      val = '';
    }
    if (eq <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key) || /[\r\n]/.test(val)) {
      throw new HyperboxError('E_ANNOTATION', `bad ${source}: ${JSON.stringify(pair.trim())} is not a key=value header`);
    }
    out[key.toLowerCase()] = val;
  }
  return out;
}

/** The endpoints for a container, or undefined when nothing asks for OTLP. */
export function resolveEndpoints(annotation: string | undefined, env: NodeJS.ProcessEnv): OtlpEndpoints | undefined {
  const headers = parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS, 'OTEL_EXPORTER_OTLP_HEADERS');
  if (annotation !== undefined) {
    const base = checkUrl(annotation, 'io.hyperbox.trace.otlp');
    return { metrics: signalUrl(base, 'metrics'), traces: signalUrl(base, 'traces'), headers };
  }
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT ? checkUrl(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'OTEL_EXPORTER_OTLP_ENDPOINT') : undefined;
  const metrics = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
    ? checkUrl(env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT')
    : base && signalUrl(base, 'metrics');
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ? checkUrl(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
    : base && signalUrl(base, 'traces');
  if (!metrics && !traces) return undefined;
  // A signal with no endpoint of its own goes nowhere rather than to a guessed one.
  return { metrics: metrics ?? '', traces: traces ?? '', headers };
}
