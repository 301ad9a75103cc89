/**
 * /etc/hyperbox/policy.json: host-wide requests, merged under each
 * container's own annotations (the container's value wins) so that policy,
 * flags and annotations all become one request.
 */
import { z, type TypeOf } from './zod.js';

export const policySchema = z
  .object({
    /** Annotations every container gets unless it sets the key itself. */
    defaults: z.record(z.string().startsWith('io.hyperbox.', 'policy keys are io.hyperbox. annotations'), z.string()).default({}),
  })
  .strict();

export type Policy = TypeOf<typeof policySchema>;

/** /etc/hyperbox/config.json: where runc is; read by the launcher too. */
export const hostConfigSchema = z.object({ runc: z.string().startsWith('/', 'runc must be an absolute path').optional() }).strict();
