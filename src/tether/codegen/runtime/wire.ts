/** Types shared by the runtime's transports, the cache kernel and the generated code. */

/** The params (or input) of an operation or context, by wire name. */
export type Params = Record<string, unknown>;

/** One entry of an `invalidate` effect: a context or a query, scoped by params. */
export interface InvalidateEntry {
  context?: string;
  query?: string;
  params?: Params;
}

/** One entry of a `merge` effect: the new value of one slot of a context. */
export interface MergeEntry {
  context: string;
  slot: string;
  params?: Params;
  value: unknown;
}

/** The effects a command's answer carries. */
export interface Effects {
  invalidate: InvalidateEntry[];
  merge: MergeEntry[];
}

/** A call's result with its effects. */
export interface Outcome<T> extends Effects {
  result: T;
}

/** One message of live push: effects of a command (or a resync order), with its event id. */
export interface LivePush {
  id: string;
  invalidate?: InvalidateEntry[];
  merge?: MergeEntry[];
  resync?: boolean;
}

/** The kind of an operation. */
export type OperationKind = "query" | "command" | "stream";

/** What the runtime knows of one operation. */
export interface OperationMeta {
  readonly kind: OperationKind;
  readonly transports: readonly string[];
  readonly context?: string;
  readonly params: readonly string[];
  /** --camel-case: TypeScript name -> wire name of the params (only when some differ). */
  readonly names?: Readonly<Record<string, string>>;
}

/** What the runtime knows of one context. */
export interface ContextMeta {
  readonly slots: readonly string[];
  readonly params: readonly string[];
  readonly rev: string | null;
  readonly perUser: boolean;
  /** --camel-case: TypeScript name -> wire name of the params (only when some differ). */
  readonly names?: Readonly<Record<string, string>>;
}

/** The schema table the generated code hands to the client. */
export interface SchemaMeta {
  readonly prefix: string;
  readonly operations: Readonly<Record<string, OperationMeta>>;
  readonly contexts: Readonly<Record<string, ContextMeta>>;
  readonly errors: Readonly<Record<string, number>>;
}

/** Empty effects. */
export function noEffects(): Effects {
  return { invalidate: [], merge: [] };
}

/** Effects read from an untrusted object (missing or malformed members become empty lists). */
export function readEffects(value: unknown): Effects {
  const out = noEffects();
  if (typeof value !== "object" || value === null) return out;
  const v = value as { invalidate?: unknown; merge?: unknown };
  if (Array.isArray(v.invalidate)) out.invalidate = v.invalidate as InvalidateEntry[];
  if (Array.isArray(v.merge)) out.merge = v.merge as MergeEntry[];
  return out;
}
