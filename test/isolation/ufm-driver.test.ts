import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FileDriver } from '../../src/isolation/drivers/files.ts'
import { UfmDriver } from '../../src/isolation/drivers/ufm.ts'
import type { DesiredObject } from '../../src/isolation/types.ts'

/** UFM stand-in: pkeys with member GUIDs; POST adds members, DELETE removes the pkey. */
function fakeUfm() {
  const pkeys = new Map<string, Map<string, string>>()
  const calls: string[] = []
  let auth: string | undefined
  const server = createServer(async (req, res) => {
    let body = ''
    for await (const c of req) body += c
    auth = req.headers.authorization
    const url = new URL(req.url!, 'http://x')
    calls.push(`${req.method} ${url.pathname}`)
    const send = (status: number, obj?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(obj === undefined ? '' : JSON.stringify(obj))
    }
    const key = /^\/ufmRest\/resources\/pkeys\/(0x[0-9a-f]+)$/.exec(url.pathname)?.[1]
    if (req.method === 'POST' && url.pathname === '/ufmRest/resources/pkeys') {
      const b = JSON.parse(body)
      const m = pkeys.get(b.pkey) ?? new Map()
      for (const g of b.guids) m.set(g, b.membership)
      pkeys.set(b.pkey, m)
      return send(200)
    }
    if (req.method === 'GET' && key) {
      const m = pkeys.get(key)
      if (!m) return send(404, { error: 'not found' })
      return send(200, {
        partition: 'p',
        ip_over_ib: true,
        guids: [...m].map(([guid, membership]) => ({ guid, membership, index0: true })),
      })
    }
    if (req.method === 'DELETE' && key) {
      pkeys.delete(key)
      return send(200)
    }
    send(405)
  })
  return { server, pkeys, calls, auth: () => auth }
}

const ufmJson = (members: [string, 'full' | 'limited'][]): DesiredObject => ({
  driver: 'infiniband',
  id: 'ufm.json',
  content: JSON.stringify(
    (['full', 'limited'] as const).flatMap((membership) => {
      const guids = members.filter(([, m]) => m === membership).map(([g]) => g)
      return guids.length
        ? [
            {
              method: 'POST',
              path: '/ufmRest/resources/pkeys',
              body: { pkey: '0x0012', guids, membership, index0: true, ip_over_ib: true },
            },
          ]
        : []
    }),
  ),
})

describe('UFM driver', () => {
  let dir: string
  let ufm: ReturnType<typeof fakeUfm>
  let driver: UfmDriver
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dflare-ufm-'))
    ufm = fakeUfm()
    await new Promise<void>((r) => ufm.server.listen(0, '127.0.0.1', r))
    const url = new URL(`http://127.0.0.1:${(ufm.server.address() as AddressInfo).port}`)
    driver = new UfmDriver(url, 'admin:s3cret', new FileDriver('infiniband', join(dir, 'a')))
  })
  after(async () => {
    ufm.server.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('creates the partition, detects and repairs member drift exactly, deletes', async () => {
    const v1 = ufmJson([
      ['0002c90300000011', 'full'],
      ['0002c90300000001', 'limited'],
    ])
    assert.deepEqual(
      driver.plan([v1], await driver.observe('acme', [v1])).map((c) => c.action),
      ['create'],
    )
    await driver.apply('acme', v1)
    assert.equal(ufm.auth(), `Basic ${Buffer.from('admin:s3cret').toString('base64')}`)
    assert.deepEqual(Object.fromEntries(ufm.pkeys.get('0x0012')!), {
      '0002c90300000011': 'full',
      '0002c90300000001': 'limited',
    })
    assert.deepEqual(driver.plan([v1], await driver.observe('acme', [v1])), [])

    // A foreign GUID added in UFM by hand is drift; the apply recreates the partition exactly.
    ufm.pkeys.get('0x0012')!.set('0002c903deadbeef', 'full')
    assert.deepEqual(
      driver.plan([v1], await driver.observe('acme', [v1])).map((c) => c.action),
      ['change'],
    )
    await driver.apply('acme', v1)
    assert.ok(!ufm.pkeys.get('0x0012')!.has('0002c903deadbeef'))
    assert.deepEqual(driver.plan([v1], await driver.observe('acme', [v1])), [])

    await driver.delete('acme', 'ufm.json')
    assert.equal(ufm.pkeys.size, 0)
    assert.deepEqual(await driver.observe('acme', []), new Map())
  })
})
