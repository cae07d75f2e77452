/** The tether runtime: errors, wire types, the client and the cache kernel. */
export { TetherError, isTetherError } from "./errors.js";
export type {
  ContextMeta,
  Effects,
  InvalidateEntry,
  LivePush,
  MergeEntry,
  OperationKind,
  OperationMeta,
  Outcome,
  Params,
  SchemaMeta,
} from "./wire.js";
export { createTetherClient } from "./client.js";
export type { CallOptions, ClientOptions, LiveStatus, TetherClient } from "./client.js";
export { CacheKernel } from "./cache.js";
export type { Snapshot, Status, Target } from "./cache.js";
