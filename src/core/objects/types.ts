/**
 * Object storage for backups and exports: a directory (embedded default) or any S3 API.
 * Keys are `/`-separated relative paths of [A-Za-z0-9._-] segments; no `..`, no leading `/`,
 * no empty segment, and no segment starting with `.` (reserved for the store's own files).
 */
export interface PutOptions {
  contentType?: string
  /**
   * Write once, read many until this time: S3 Object Lock in COMPLIANCE mode where the bucket
   * supports it; read-only files plus a retention record on the directory store. A retained
   * object cannot be overwritten or deleted before the date.
   */
  retainUntil?: Date
  /** Refuse to overwrite an existing object. */
  ifNoneMatch?: boolean
}

export interface ObjectInfo {
  key: string
  size: number
  lastModified: Date
  contentType?: string
  retainUntil?: Date
  etag?: string
}

export interface ObjectStore {
  /** `directory` or `s3`. */
  readonly kind: 'directory' | 's3'
  /** Human-readable location, free of credentials. */
  readonly location: string
  put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<ObjectInfo>
  /** The object's bytes, or undefined when it does not exist. */
  get(key: string): Promise<Buffer | undefined>
  head(key: string): Promise<ObjectInfo | undefined>
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix?: string): AsyncIterable<ObjectInfo>
  /** Deletes; throws ObjectLockedError while the object is retained. Missing keys are fine. */
  delete(key: string): Promise<void>
  /** Whether this store enforces retention (Object Lock enabled bucket, or directory store). */
  supportsRetention(): Promise<boolean>
  /** Releases connections (S3 client sockets); the store is unusable afterwards. */
  close?(): Promise<void>
}

export class ObjectLockedError extends Error {
  override name = 'ObjectLockedError'
}

export class InvalidObjectKeyError extends Error {
  override name = 'InvalidObjectKeyError'
}

/** `put` with `ifNoneMatch` found the key already taken. */
export class ObjectExistsError extends Error {
  override name = 'ObjectExistsError'
}

/**
 * `put` with `retainUntil` on a store that cannot enforce retention (an S3 bucket without
 * Object Lock). Retention is never silently dropped: callers that accept unretained copies check
 * `supportsRetention()` and leave `retainUntil` out themselves.
 */
export class RetentionUnsupportedError extends Error {
  override name = 'RetentionUnsupportedError'
}

/** A bad DFLARE_OBJECT_STORE value; the message names the setting and is free of credentials. */
export class ObjectStoreConfigError extends Error {
  override name = 'ObjectStoreConfigError'
}
