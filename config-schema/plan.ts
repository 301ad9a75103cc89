/** What hyperbox decided for one container at create, kept in its state dir for the hooks. */
import { z, type TypeOf } from './zod.js';

export const planRecordSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  /** Unique per create: tells this container's state from a later one that reuses the id. */
  instance: z.string(),
  runcRoot: z.string(),
  bundle: z.string(),
  configPath: z.string(),
  createdAt: z.string(),
  /** Feature name -> its validated options. */
  features: z.record(z.string(), z.unknown()),
});

export type PlanRecord = TypeOf<typeof planRecordSchema>;
