import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  DirectoryObjectStore,
  ObjectStoreConfigError,
  openObjectStore,
  parseS3Url,
  S3ObjectStore,
} from '../../../src/core/objects/index.ts'

describe('openObjectStore', () => {
  it('opens a directory path, creating it', async () => {
    const base = await mkdtemp(join(tmpdir(), 'dflare-open-'))
    try {
      const store = await openObjectStore(join(base, 'objects'))
      assert.ok(store instanceof DirectoryObjectStore)
      assert.equal(store.location, join(base, 'objects'))
      assert.ok((await stat(join(base, 'objects'))).isDirectory())
    } finally {
      await rm(base, { recursive: true, force: true })
    }
  })

  it('opens an s3:// URL without touching the network', async () => {
    const store = await openObjectStore(
      's3://backups.example/dflare/prod?endpoint=https://minio.internal:9000&region=eu-west-1&forcePathStyle=true',
    )
    assert.ok(store instanceof S3ObjectStore)
    assert.equal(store.kind, 's3')
    assert.equal(
      store.location,
      's3://backups.example/dflare/prod/?endpoint=https%3A%2F%2Fminio.internal%3A9000&region=eu-west-1&forcePathStyle=true',
    )
    await store.close?.()
  })

  it('parses the URL parts and round-trips its location', () => {
    const loc = parseS3Url('s3://my-bucket?region=ap-south-1')
    assert.deepEqual(loc, {
      bucket: 'my-bucket',
      prefix: '',
      endpoint: undefined,
      region: 'ap-south-1',
      forcePathStyle: false,
    })
    const store = new S3ObjectStore(parseS3Url('s3://b-1/a/b?endpoint=http://127.0.0.1:9000'))
    assert.deepEqual(parseS3Url(store.location), parseS3Url(store.location))
    assert.equal(parseS3Url(store.location).prefix, 'a/b/')
    assert.equal(parseS3Url(store.location).endpoint, 'http://127.0.0.1:9000')
  })

  it('refuses bad values with one line naming the setting, never echoing credentials', async () => {
    const cases: [string, RegExp][] = [
      ['', /must not be empty/],
      ['s3://AKIAEXAMPLE:s3cr3tK3y@bucket/x', /credentials do not belong in the URL/],
      ['s3://bucket/x?endpoint=https://AKIAEXAMPLE:s3cr3tK3y@minio', /credentials/],
      ['s3://B_/x', /bucket name/],
      ['s3://bucket/../etc', /prefix/],
      ['s3://bucket/a/./b', /prefix/],
      ['s3://bucket/%2E%2E/etc', /prefix/],
      ['s3://bucket/x?secretAccessKey=s3cr3tK3y', /unknown parameter/],
      ['s3://bucket/x?endpoint=ftp://host', /endpoint must be an http/],
      ['s3://bucket/x?forcePathStyle=yes', /forcePathStyle/],
      ['s3://bucket/x?region=Eu%20West', /region/],
      ['http://bucket/x', /unsupported URL scheme/],
      ['gs://bucket/x', /unsupported URL scheme/],
      ['s3://', /not a valid s3|bucket name/],
    ]
    for (const [spec, why] of cases) {
      await assert.rejects(openObjectStore(spec), (err: Error) => {
        assert.ok(err instanceof ObjectStoreConfigError, spec)
        assert.match(err.message, /^DFLARE_OBJECT_STORE: /)
        assert.match(err.message, why, spec)
        assert.doesNotMatch(err.message, /s3cr3tK3y|AKIAEXAMPLE|\n/)
        return true
      })
    }
  })
})
