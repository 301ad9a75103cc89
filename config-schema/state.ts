/** The OCI state runc writes on a hook's stdin. */
import { z, type TypeOf } from './zod.js';

export const ociStateSchema = z
  .object({
    ociVersion: z.string(),
    id: z.string().min(1),
    status: z.string(),
    pid: z.number().int().optional(),
    bundle: z.string(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .passthrough();

export type OciState = TypeOf<typeof ociStateSchema>;
