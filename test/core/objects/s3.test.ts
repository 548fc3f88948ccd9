import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import {
  ObjectExistsError,
  ObjectLockedError,
  RetentionUnsupportedError,
  S3ObjectStore,
} from '../../../src/core/objects/index.ts'
import { collect, objectStoreSuite } from './suite.ts'

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
const BUCKET = 'dflare-test'

interface S3rverInstance {
  run(): Promise<AddressInfo>
  close(): Promise<void>
}
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: object) => S3rverInstance

let s3rver: S3rverInstance
let endpoint: string
let s3rverDir: string
let prefixCounter = 0

before(async () => {
  s3rverDir = await mkdtemp(join(tmpdir(), 'dflare-s3rver-'))
  s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: s3rverDir,
    configureBuckets: [{ name: BUCKET }],
  })
  const { port } = await s3rver.run()
  endpoint = `http://127.0.0.1:${port}`
})
after(async () => {
  await s3rver.close()
  await rm(s3rverDir, { recursive: true, force: true })
})

/** A store under its own prefix of the shared bucket, so tests never see each other's objects. */
function s3rverStore(options: { listPageSize?: number } = {}) {
  const url = `s3://${BUCKET}/t${++prefixCounter}/?endpoint=${endpoint}&region=us-east-1&forcePathStyle=true`
  return S3ObjectStore.fromUrl(url, { credentials, ...options })
}

objectStoreSuite(
  's3 (s3rver)',
  async () => {
    // Pagination is tested on the capture server: s3rver's continuation tokens use DES,
    // which OpenSSL 3 no longer offers, so a truncated listing fails there.
    const store = s3rverStore()
    return { store, close: () => store.close() }
  },
  // s3rver ignores If-None-Match on PUT; the header itself is checked against the capture server.
  { conditionalWrites: false, byteOrder: false, propertyRuns: 15 },
)

describe('S3ObjectStore on s3rver', () => {
  it('names a credential-free location', () => {
    const store = s3rverStore()
    assert.equal(store.kind, 's3')
    assert.match(store.location, /^s3:\/\/dflare-test\/t\d+\/\?endpoint=http/)
    assert.doesNotMatch(store.location, /S3RVER/)
  })

  it('keeps prefixes apart and skips foreign names that are not valid keys', async () => {
    const a = s3rverStore()
    const b = s3rverStore()
    await a.put('same', 'from a')
    await b.put('same', 'from b')
    assert.equal((await a.get('same'))?.toString(), 'from a')
    assert.deepEqual(
      (await collect(b.list())).map((i) => i.key),
      ['same'],
    )

    const raw = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials })
    const prefix = new URL(a.location).pathname.slice(1)
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}../x`, Body: 'x' }))
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}.hidden`, Body: 'x' }))
    raw.destroy()
    assert.deepEqual(
      (await collect(a.list())).map((i) => i.key),
      ['same'],
    )
    await Promise.all([a.close(), b.close()])
  })

  it('refuses retention when the server has no Object Lock, writing nothing', async () => {
    const store = s3rverStore()
    assert.equal(await store.supportsRetention(), false)
    await assert.rejects(
      store.put('kept', 'x', { retainUntil: new Date(Date.now() + 60_000) }),
      RetentionUnsupportedError,
    )
    assert.equal(await store.head('kept'), undefined)
    await store.close()
  })
})

interface Captured {
  method: string
  path: string
  query: string
  headers: IncomingHttpHeaders
  body: Buffer
}

/**
 * A loopback stand-in for an Object Lock bucket: it records every request and answers just
 * enough of the S3 protocol for the store.
 */
async function captureServer(
  state: { lockEnabled: boolean; retained: Map<string, Date> },
  options: { listPageSize?: number } = {},
) {
  const requests: Captured[] = []
  const existing = new Set<string>()
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const r: Captured = {
        method: req.method ?? '',
        path: decodeURIComponent(url.pathname),
        query: url.search,
        headers: req.headers,
        body: Buffer.concat(chunks),
      }
      requests.push(r)
      // Every key the store sends lives under the URL's prefix `backups/`.
      const key = r.path.split('/').slice(3).join('/')
      const xml = (status: number, body: string) => {
        res.writeHead(status, { 'content-type': 'application/xml' })
        res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`)
      }
      if (r.method === 'GET' && url.searchParams.has('object-lock')) {
        if (state.lockEnabled)
          return xml(
            200,
            '<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>',
          )
        return xml(
          404,
          '<Error><Code>ObjectLockConfigurationNotFoundError</Code><Message>none</Message></Error>',
        )
      }
      if (r.method === 'GET' && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') ?? ''
        const max = Number(url.searchParams.get('max-keys') ?? 1000)
        const all = [...existing]
          .map((k) => `backups/${k}`)
          .filter((k) => k.startsWith(prefix))
          .sort()
        const start = Number(url.searchParams.get('continuation-token') ?? 0)
        const page = all.slice(start, start + max)
        const truncated = start + max < all.length
        const contents = page
          .map(
            (k) =>
              `<Contents><Key>${k}</Key><Size>1</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>"e"</ETag></Contents>`,
          )
          .join('')
        return xml(
          200,
          `<ListBucketResult><Name>locked-bucket</Name><Prefix>${prefix}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${max}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${truncated ? `<NextContinuationToken>${start + max}</NextContinuationToken>` : ''}${contents}</ListBucketResult>`,
        )
      }
      if (r.method === 'HEAD') {
        const until = state.retained.get(key)
        if (!until && !existing.has(key)) {
          res.writeHead(404)
          return res.end()
        }
        res.writeHead(200, {
          'content-length': '1',
          etag: '"0cc175b9c0f1b6a831c399e269772661"',
          'last-modified': new Date().toUTCString(),
          ...(until
            ? {
                'x-amz-object-lock-mode': 'COMPLIANCE',
                'x-amz-object-lock-retain-until-date': until.toISOString(),
              }
            : {}),
        })
        return res.end()
      }
      if (r.method === 'PUT') {
        if (existing.has(key) && r.headers['if-none-match'] === '*')
          return xml(412, '<Error><Code>PreconditionFailed</Code><Message>exists</Message></Error>')
        existing.add(key)
        res.writeHead(200, { etag: `"${createHash('md5').update(r.body).digest('hex')}"` })
        return res.end()
      }
      if (r.method === 'DELETE') {
        existing.delete(key)
        res.writeHead(204)
        return res.end()
      }
      xml(400, '<Error><Code>InvalidRequest</Code><Message>unexpected</Message></Error>')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const store = S3ObjectStore.fromUrl(
    `s3://locked-bucket/backups?endpoint=http://127.0.0.1:${port}&region=eu-west-1&forcePathStyle=true`,
    { credentials, ...options },
  )
  return {
    store,
    requests,
    async close() {
      await store.close()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

describe('S3ObjectStore wire protocol (capture server)', () => {
  it('sends Object Lock COMPLIANCE headers with Content-MD5 and no aws-chunked checksums', async () => {
    const srv = await captureServer({ lockEnabled: true, retained: new Map() })
    try {
      assert.equal(await srv.store.supportsRetention(), true)
      const retainUntil = new Date('2030-01-02T03:04:05.000Z')
      const body = Buffer.from('checkpoint bytes')
      const info = await srv.store.put('audit/cp-1', body, {
        retainUntil,
        contentType: 'text/plain',
      })
      assert.equal(info.etag, createHash('md5').update(body).digest('hex'))
      const put = srv.requests.find((r) => r.method === 'PUT')
      assert.ok(put)
      assert.equal(put.path, '/locked-bucket/backups/audit/cp-1')
      assert.equal(put.headers['x-amz-object-lock-mode'], 'COMPLIANCE')
      assert.equal(
        new Date(String(put.headers['x-amz-object-lock-retain-until-date'])).getTime(),
        retainUntil.getTime(),
      )
      assert.equal(put.headers['content-md5'], createHash('md5').update(body).digest('base64'))
      assert.equal(put.headers['content-type'], 'text/plain')
      assert.equal(put.headers['if-none-match'], undefined)
      assert.deepEqual(put.body, body)
      // Flexible checksums and aws-chunked bodies are what S3-compatible servers reject.
      assert.equal(put.headers['content-encoding'], undefined)
      assert.equal(put.headers['x-amz-decoded-content-length'], undefined)
      assert.doesNotMatch(String(put.headers['x-amz-content-sha256']), /STREAMING/)
      assert.deepEqual(
        Object.keys(put.headers).filter(
          (h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm',
        ),
        [],
      )
      assert.match(String(put.headers.authorization), /^AWS4-HMAC-SHA256 Credential=S3RVER\//)
    } finally {
      await srv.close()
    }
  })

  it('sends If-None-Match: * and maps 412 to ObjectExistsError', async () => {
    const srv = await captureServer({ lockEnabled: false, retained: new Map() })
    try {
      await srv.store.put('once', 'a', { ifNoneMatch: true })
      await assert.rejects(srv.store.put('once', 'b', { ifNoneMatch: true }), ObjectExistsError)
      const puts = srv.requests.filter((r) => r.method === 'PUT')
      assert.equal(puts.length, 2)
      for (const p of puts) assert.equal(p.headers['if-none-match'], '*')
      assert.equal(puts[0]!.headers['x-amz-object-lock-mode'], undefined)
    } finally {
      await srv.close()
    }
  })

  it('refuses overwrite and delete of a retained version before sending them', async () => {
    const retained = new Map([['kept', new Date(Date.now() + 86_400_000)]])
    const srv = await captureServer({ lockEnabled: true, retained })
    try {
      await assert.rejects(srv.store.put('kept', 'forged'), ObjectLockedError)
      await assert.rejects(srv.store.delete('kept'), ObjectLockedError)
      assert.deepEqual(
        srv.requests.filter((r) => r.method === 'PUT' || r.method === 'DELETE'),
        [],
      )
      // Once the date has passed, the key is writable again.
      retained.set('kept', new Date(Date.now() - 1000))
      await srv.store.delete('kept')
      assert.equal(srv.requests.filter((r) => r.method === 'DELETE').length, 1)
    } finally {
      await srv.close()
    }
  })

  it('follows ListObjectsV2 continuation tokens across pages, in key order', async () => {
    const srv = await captureServer(
      { lockEnabled: false, retained: new Map() },
      { listPageSize: 2 },
    )
    try {
      const keys = ['e', 'a/1', 'c', 'a/2', 'b']
      for (const k of keys) await srv.store.put(k, 'x')
      assert.deepEqual(
        (await collect(srv.store.list())).map((i) => i.key),
        [...keys].sort(),
      )
      assert.deepEqual(
        (await collect(srv.store.list('a/'))).map((i) => i.key),
        ['a/1', 'a/2'],
      )
      const lists = srv.requests.filter((r) => r.query.includes('list-type=2'))
      assert.equal(lists.length, 3 + 1)
      assert.ok(lists.some((r) => r.query.includes('continuation-token=4')))
      assert.ok(lists.every((r) => r.query.includes('max-keys=2')))
    } finally {
      await srv.close()
    }
  })

  it('refuses retention on a bucket without Object Lock, sending no PUT', async () => {
    const srv = await captureServer({ lockEnabled: false, retained: new Map() })
    try {
      await assert.rejects(
        srv.store.put('k', 'x', { retainUntil: new Date(Date.now() + 60_000) }),
        RetentionUnsupportedError,
      )
      assert.deepEqual(
        srv.requests.filter((r) => r.method === 'PUT'),
        [],
      )
    } finally {
      await srv.close()
    }
  })
})
