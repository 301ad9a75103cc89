/** The one error type below the CLI: a sentence a user can act on, a stable code, and the cause. */
export class HyperboxError extends Error {
  override readonly name = 'HyperboxError';
  /** Stable machine-readable code, e.g. 'E_CONFIG', 'E_ANNOTATION'. */
  readonly code: string;
  /** errno of the failing system call, when there was one. */
  readonly errno: number | undefined;

  constructor(code: string, message: string, options: { cause?: unknown; errno?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options.errno ?? errnoOf(options.cause);
  }
}

function errnoOf(cause: unknown): number | undefined {
  if (cause && typeof cause === 'object' && 'errno' in cause && typeof cause.errno === 'number') {
    return Math.abs(cause.errno);
  }
  return undefined;
}

/** The short reason of a Node system error ("ENOENT: no such file..." -> "no such file or directory"). */
export function reasonOf(err: unknown): string {
  if (err instanceof HyperboxError) return err.message;
  if (err && typeof err === 'object' && 'code' in err && 'message' in err && typeof err.message === 'string') {
    const m = /^[A-Z]+: (.*?)(, \w+ '.*')?$/.exec(err.message);
    if (m?.[1]) return m[1];
    return err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
