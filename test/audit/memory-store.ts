import {
  type ObjectInfo,
  ObjectLockedError,
  type ObjectStore,
  type PutOptions,
} from '../../src/core/objects/types.ts'

/** In-memory ObjectStore with retention, standing in for the directory/S3 stores in tests. */
export class MemoryObjectStore implements ObjectStore {
  readonly kind = 'directory' as const
  readonly location = 'memory'
  readonly objects = new Map<string, { body: Buffer; info: ObjectInfo }>()
  now = () => new Date()

  async put(key: string, body: Uint8Array | string, o: PutOptions = {}) {
    const existing = this.objects.get(key)
    if (existing && o.ifNoneMatch) throw new Error(`object ${key} exists`)
    if (existing?.info.retainUntil && existing.info.retainUntil > this.now())
      throw new ObjectLockedError(key)
    const buf = Buffer.from(body)
    const info: ObjectInfo = {
      key,
      size: buf.length,
      lastModified: this.now(),
      ...(o.contentType ? { contentType: o.contentType } : {}),
      ...(o.retainUntil ? { retainUntil: o.retainUntil } : {}),
    }
    this.objects.set(key, { body: buf, info })
    return info
  }
  async get(key: string) {
    const o = this.objects.get(key)
    return o ? Buffer.from(o.body) : undefined
  }
  async head(key: string) {
    return this.objects.get(key)?.info
  }
  async *list(prefix = '') {
    for (const key of [...this.objects.keys()].sort())
      if (key.startsWith(prefix)) yield this.objects.get(key)!.info
  }
  async delete(key: string) {
    const o = this.objects.get(key)
    if (o?.info.retainUntil && o.info.retainUntil > this.now()) throw new ObjectLockedError(key)
    this.objects.delete(key)
  }
  async supportsRetention() {
    return true
  }
}
