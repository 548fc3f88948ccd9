import { createHash } from 'node:crypto'
import {
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { type Clock, systemClock } from '../clock.ts'
import { checkKey, checkPrefix, checkRetainUntil, isValidKey } from './checks.ts'
import {
  ObjectExistsError,
  type ObjectInfo,
  ObjectLockedError,
  type ObjectStore,
  ObjectStoreConfigError,
  type PutOptions,
  RetentionUnsupportedError,
} from './types.ts'

/** Where an S3 store lives; parsed from `s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true`. */
export interface S3Location {
  bucket: string
  /** Key prefix inside the bucket: empty, or ending with `/`. */
  prefix: string
  /** Custom endpoint for S3-compatible servers (MinIO, Ceph, …); AWS when absent. */
  endpoint?: string
  region: string
  forcePathStyle: boolean
}

const SETTING = 'DFLARE_OBJECT_STORE'
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
const QUERY_KEYS = new Set(['endpoint', 'region', 'forcePathStyle'])

/**
 * Parses an s3:// URL. Credentials never go in the URL (they come from the standard AWS chain),
 * and error messages never quote the URL, in case someone put them there anyway.
 */
export function parseS3Url(spec: string): S3Location {
  const bad = (why: string): never => {
    throw new ObjectStoreConfigError(`${SETTING}: ${why}`)
  }
  let url: URL
  try {
    url = new URL(spec)
  } catch {
    return bad('not a valid s3:// URL (s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true)')
  }
  if (url.protocol !== 's3:') bad('the URL scheme must be s3://')
  if (url.username || url.password)
    bad('credentials do not belong in the URL; use the AWS environment or credential files')
  if (!BUCKET.test(url.hostname)) bad('the bucket name must be 3-63 characters of a-z 0-9 . -')
  for (const name of url.searchParams.keys())
    if (!QUERY_KEYS.has(name))
      bad(`unknown parameter "${name}" (allowed: endpoint, region, forcePathStyle)`)

  // URL parsing silently resolves `.` and `..` (even as %2E%2E), so read the prefix from the
  // raw text: a prefix that needs them is a mistake.
  let prefix = ''
  try {
    prefix = decodeURIComponent(spec.replace(/^s3:\/\/[^/?#]*\/*/i, '').replace(/[?#].*$/, ''))
  } catch {
    bad('the prefix is not valid percent-encoding')
  }
  if (prefix && !prefix.endsWith('/')) prefix += '/'
  try {
    checkPrefix(prefix)
  } catch {
    bad('the prefix must be /-separated segments of A-Z a-z 0-9 . _ - not starting with "."')
  }

  let endpoint: string | undefined
  const rawEndpoint = url.searchParams.get('endpoint')
  if (rawEndpoint !== null) {
    let e: URL | undefined
    try {
      e = new URL(rawEndpoint)
    } catch {
      bad('endpoint must be an http:// or https:// URL')
    }
    if (e!.protocol !== 'https:' && e!.protocol !== 'http:')
      bad('endpoint must be an http:// or https:// URL')
    if (e!.username || e!.password) bad('credentials do not belong in the endpoint URL')
    if (e!.search || e!.hash) bad('endpoint must not have a query or fragment')
    endpoint = `${e!.origin}${e!.pathname === '/' ? '' : e!.pathname}`
  }

  const region =
    url.searchParams.get('region') ||
    process.env.AWS_REGION ||
    process.env.AWS_DEFAULT_REGION ||
    'us-east-1'
  if (!/^[a-z0-9-]{1,64}$/.test(region)) bad('region must be a region name like eu-west-1')

  const style = url.searchParams.get('forcePathStyle')
  if (style !== null && style !== 'true' && style !== 'false')
    bad('forcePathStyle must be true or false')

  return { bucket: url.hostname, prefix, endpoint, region, forcePathStyle: style === 'true' }
}

/** The credential-free URL naming a location; parseS3Url reads it back. */
export function formatS3Url(loc: S3Location): string {
  const query = new URLSearchParams()
  if (loc.endpoint) query.set('endpoint', loc.endpoint)
  query.set('region', loc.region)
  if (loc.forcePathStyle) query.set('forcePathStyle', 'true')
  return `s3://${loc.bucket}/${loc.prefix}?${query}`
}

export interface S3StoreOptions {
  /** Explicit credentials (tests); otherwise the standard AWS provider chain. */
  credentials?: S3ClientConfig['credentials']
  clock?: Clock
  /** Keys per ListObjectsV2 page (S3's maximum, 1000, by default). */
  listPageSize?: number
}

/**
 * Objects in an S3 bucket (AWS or any S3-compatible server) under a key prefix.
 *
 * Retention uses Object Lock in COMPLIANCE mode. S3 locks object *versions*: a plain PUT or
 * DELETE on a locked key would succeed by adding a version or delete marker while the locked
 * version lives on. To give callers the same contract as the directory store, put and delete
 * first read the current version's retention and refuse with ObjectLockedError.
 */
export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const
  readonly location: string
  readonly #loc: S3Location
  readonly #client: S3Client
  readonly #clock: Clock
  readonly #pageSize: number
  #lockEnabled: Promise<boolean> | undefined

  constructor(loc: S3Location, options: S3StoreOptions = {}) {
    this.#loc = loc
    this.location = formatS3Url(loc)
    this.#clock = options.clock ?? systemClock
    this.#pageSize = options.listPageSize ?? 1000
    this.#client = new S3Client({
      region: loc.region,
      ...(loc.endpoint ? { endpoint: loc.endpoint } : {}),
      forcePathStyle: loc.forcePathStyle,
      followRegionRedirects: true,
      // Recent SDKs add CRC checksums and aws-chunked uploads by default, which many
      // S3-compatible servers reject; we send Content-MD5 ourselves instead.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(options.credentials ? { credentials: options.credentials } : {}),
    })
  }

  static fromUrl(spec: string, options?: S3StoreOptions): S3ObjectStore {
    return new S3ObjectStore(parseS3Url(spec), options)
  }

  /** Whether the bucket has Object Lock enabled (cached once true). */
  supportsRetention(): Promise<boolean> {
    if (!this.#lockEnabled) {
      const check = this.#client
        .send(new GetObjectLockConfigurationCommand({ Bucket: this.#loc.bucket }))
        .then(
          (out) => out.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
          (err) => {
            if (isLockUnavailable(err)) return false
            throw err
          },
        )
      this.#lockEnabled = check
      // Only a positive answer is cached: a bucket may gain Object Lock later, and an error is
      // worth retrying.
      check.then(
        (enabled) => {
          if (!enabled) this.#lockEnabled = undefined
        },
        () => {
          this.#lockEnabled = undefined
        },
      )
    }
    return this.#lockEnabled
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<ObjectInfo> {
    checkKey(key)
    checkRetainUntil(options.retainUntil, this.#clock)
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    if (options.retainUntil && !(await this.supportsRetention()))
      throw new RetentionUnsupportedError(
        `Bucket ${this.#loc.bucket} has no Object Lock; it cannot retain ${key}`,
      )
    if (!options.ifNoneMatch) await this.#refuseIfRetained(key)

    let etag: string | undefined
    try {
      const out = await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#loc.bucket,
          Key: this.#loc.prefix + key,
          Body: bytes,
          ContentLength: bytes.byteLength,
          // Object Lock requires an integrity header; it is cheap, so always send one.
          ContentMD5: createHash('md5').update(bytes).digest('base64'),
          ...(options.contentType ? { ContentType: options.contentType } : {}),
          ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          ...(options.retainUntil
            ? { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: options.retainUntil }
            : {}),
        }),
      )
      etag = unquote(out.ETag)
    } catch (err) {
      if (status(err) === 412) throw new ObjectExistsError(`Object ${key} already exists`)
      throw err
    }
    return {
      key,
      size: bytes.byteLength,
      // PutObject does not return the server's timestamp; this is the local completion time.
      lastModified: this.#clock.now(),
      ...(options.contentType ? { contentType: options.contentType } : {}),
      ...(options.retainUntil ? { retainUntil: options.retainUntil } : {}),
      ...(etag ? { etag } : {}),
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(key)
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#loc.bucket, Key: this.#loc.prefix + key }),
      )
      return Buffer.from(await out.Body!.transformToByteArray())
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key)
    let out: HeadObjectCommandOutput
    try {
      out = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.#loc.bucket, Key: this.#loc.prefix + key }),
      )
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
    const etag = unquote(out.ETag)
    return {
      key,
      size: out.ContentLength ?? 0,
      lastModified: out.LastModified ?? new Date(0),
      ...(out.ContentType ? { contentType: out.ContentType } : {}),
      ...(out.ObjectLockRetainUntilDate ? { retainUntil: out.ObjectLockRetainUntilDate } : {}),
      ...(etag ? { etag } : {}),
    }
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix)
    const base = this.#loc.prefix
    const pages = paginateListObjectsV2(
      { client: this.#client, pageSize: this.#pageSize },
      { Bucket: this.#loc.bucket, Prefix: base + prefix },
    )
    for await (const page of pages) {
      for (const item of page.Contents ?? []) {
        const key = item.Key?.slice(base.length)
        // Names written by other tools that are not valid keys are not ours to hand out.
        if (!key || !isValidKey(key)) continue
        const etag = unquote(item.ETag)
        yield {
          key,
          size: item.Size ?? 0,
          lastModified: item.LastModified ?? new Date(0),
          ...(etag ? { etag } : {}),
        }
      }
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    await this.#refuseIfRetained(key)
    await this.#client.send(
      new DeleteObjectCommand({ Bucket: this.#loc.bucket, Key: this.#loc.prefix + key }),
    )
  }

  async close(): Promise<void> {
    this.#client.destroy()
  }

  async #refuseIfRetained(key: string) {
    const until = (await this.head(key))?.retainUntil
    if (until && until > this.#clock.now())
      throw new ObjectLockedError(`Object ${key} is retained until ${until.toISOString()}`)
  }
}

function status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
}

function isNotFound(err: unknown) {
  const name = (err as Error).name
  return name === 'NoSuchKey' || name === 'NotFound' || status(err) === 404
}

/** The bucket has no Object Lock configuration, or the server does not implement it. */
function isLockUnavailable(err: unknown) {
  const name = (err as Error).name
  return (
    name === 'ObjectLockConfigurationNotFoundError' ||
    name === 'NotImplemented' ||
    status(err) === 404 ||
    status(err) === 501
  )
}

function unquote(etag: string | undefined) {
  return etag?.replace(/^"|"$/g, '') || undefined
}
