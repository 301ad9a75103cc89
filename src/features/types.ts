/**
 * The one interface a capability implements. The CLI and the hook dispatcher
 * iterate over a list of these and never name one; a capability is a folder
 * under src/features/ exporting a Feature.
 */
import type { Command } from 'commander';
import type { OciState } from '../../config-schema/state.js';
import type { PlanRecord } from '../../config-schema/plan.js';
import type { Logger } from '../cli/log.js';
import type { JsonObject } from '../oci/json.js';
import type { FeatureStage } from '../oci/hooks.js';

/** Everything a feature may plan from: one request, whatever channel it came through. */
export interface PlanInput {
  command: 'create' | 'run';
  id: string;
  bundleDir: string;
  /** Policy defaults, then config.json annotations, then CLI flags (later wins). */
  annotations: Readonly<Record<string, string>>;
  /** The annotations that came from this command line's flags only: what a feature may take a path from. */
  fromFlags: Readonly<Record<string, string>>;
  /** The caller's spec, read-only at planning time. */
  spec: Readonly<JsonObject>;
}

/** What modify() gets besides the spec. */
export interface ModifyContext {
  id: string;
  bundleDir: string;
  runcRoot: string;
  /** This container's hyperbox state dir (exists, root-only). */
  stateDir: string;
  log: Logger;
}

/** What a hook handler gets. */
export interface HookContext<Options> {
  stage: FeatureStage;
  /** The OCI state from runc; undefined when `gc` releases a container whose poststop never ran. */
  state: OciState | undefined;
  options: Options;
  plan: PlanRecord;
  stateDir: string;
  log: Logger;
}

/** A CLI flag a feature adds to run/create/spec; it becomes annotations, so flags and annotations share one path. */
export interface FeatureFlag {
  /** Flag names without dashes, first is canonical: ['seccomp-learn']. */
  names: string[];
  value: boolean;
  commands: ('create' | 'run' | 'spec')[];
  description: string;
  toAnnotations(value: string | boolean): Record<string, string>;
}

/** A capability. */
export interface Feature<Options = unknown> {
  name: string;
  /** Owns this annotation and every `<prefix>.*` key; unknown io.hyperbox. keys are refused. */
  annotationPrefix: string;
  flags?: FeatureFlag[];
  /** Validated options when the request asks for this feature, else undefined; throws HyperboxError on bad input. */
  plan(input: PlanInput): Options | undefined;
  /**
   * True when this request can run without a config.json (`run --image X ID`):
   * create/run then writes runc's default spec into a bundle of its own.
   */
  makesBundle?(fromFlags: Readonly<Record<string, string>>): boolean;
  /** Edits the spec in place before runc sees it. */
  modify?(spec: JsonObject, options: Options, ctx: ModifyContext): void | Promise<void>;
  /** Which hook stages this request needs (default: every stage in `hooks`); each one costs a Node start. poststop always runs. */
  stages?(options: Options): FeatureStage[];
  /** Called from runc's hooks. poststop must also work with state undefined (gc after a crash). */
  hooks?: Partial<Record<FeatureStage, (ctx: HookContext<Options>) => void | Promise<void>>>;
  /** Extra `hyperbox-runc <name> ...` subcommands; an action sets a non-zero exit code through setCode. */
  commands?: ((program: Command, setCode: (code: number) => void) => void)[];
  /** Lines for `hyperbox-runc doctor`: what this feature needs and what falls back. */
  doctor?(): DoctorLine[] | Promise<DoctorLine[]>;
}

/** One probe result in `hyperbox-runc doctor`. */
export interface DoctorLine {
  check: string;
  ok: boolean;
  detail: string;
  /** What happens when it is missing ("falls back to ..." / "fails the create"). */
  consequence?: string;
}

/** A feature as stored in a list (options type erased). */
export type AnyFeature = Feature<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
