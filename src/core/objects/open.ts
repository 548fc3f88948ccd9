import { isAbsolute, resolve } from 'node:path'
import type { Clock } from '../clock.ts'
import { DirectoryObjectStore } from './directory.ts'
import { S3ObjectStore } from './s3.ts'
import { type ObjectStore, ObjectStoreConfigError } from './types.ts'

/**
 * Opens the store a DFLARE_OBJECT_STORE value names: an `s3://` URL, or a directory path
 * (created with mode 0700 if missing). Any other URL scheme is refused rather than taken for a
 * relative directory name.
 */
export async function openObjectStore(
  spec: string,
  options: { clock?: Clock } = {},
): Promise<ObjectStore> {
  const value = spec.trim()
  if (!value) throw new ObjectStoreConfigError('DFLARE_OBJECT_STORE: must not be empty')
  if (/^s3:/i.test(value)) return S3ObjectStore.fromUrl(value, options)
  // Windows drive letters aside, `scheme:` means someone meant a URL we do not support.
  if (/^[a-z][a-z0-9+.-]*:/i.test(value) && !isAbsolute(value))
    throw new ObjectStoreConfigError(
      'DFLARE_OBJECT_STORE: unsupported URL scheme (use a directory path or s3://bucket/prefix)',
    )
  return new DirectoryObjectStore(resolve(value), options).init()
}
