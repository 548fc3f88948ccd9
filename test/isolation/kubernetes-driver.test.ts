import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import YAML from 'yaml'
import { FileDriver } from '../../src/isolation/drivers/files.ts'
import { KubernetesDriver } from '../../src/isolation/drivers/kubernetes.ts'
import { renderKubernetes } from '../../src/isolation/render/kubernetes.ts'
import type { Resources } from '../../src/isolation/resources.ts'
import { validateSpec } from '../../src/isolation/spec.ts'
import { specFor } from './helpers.ts'

const RESOURCES: Record<string, { name: string; kind: string; namespaced: boolean }[]> = {
  '/api/v1': [
    { name: 'namespaces', kind: 'Namespace', namespaced: false },
    { name: 'resourcequotas', kind: 'ResourceQuota', namespaced: true },
    { name: 'limitranges', kind: 'LimitRange', namespaced: true },
  ],
  '/apis/networking.k8s.io/v1': [
    { name: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
  ],
  '/apis/rbac.authorization.k8s.io/v1': [
    { name: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  ],
}

/** A tiny API server: discovery, server-side apply (PATCH), GET, list by label, DELETE. */
function fakeApiServer() {
  // biome-ignore lint/suspicious/noExplicitAny: stored manifests are arbitrary JSON
  const store = new Map<string, Record<string, any>>()
  const patches: {
    path: string
    contentType?: string
    fieldManager: string | null
    force: string | null
  }[] = []
  const server = createServer(async (req, res) => {
    const url = new URL(req.url!, 'http://x')
    let body = ''
    for await (const chunk of req) body += chunk
    const send = (status: number, obj: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(obj))
    }
    if (RESOURCES[url.pathname])
      return send(200, { kind: 'APIResourceList', resources: RESOURCES[url.pathname] })
    if (req.method === 'PATCH') {
      patches.push({
        path: url.pathname,
        contentType: req.headers['content-type'],
        fieldManager: url.searchParams.get('fieldManager'),
        force: url.searchParams.get('force'),
      })
      const obj = YAML.parse(body)
      obj.metadata.uid = `uid-${store.size}` // fields the server adds
      store.set(url.pathname, obj)
      return send(200, obj)
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/namespaces') {
      const [k, v] = (url.searchParams.get('labelSelector') ?? '=').split('=')
      const items = [...store.entries()]
        .filter(
          ([p, o]) => /^\/api\/v1\/namespaces\/[^/]+$/.test(p) && o.metadata.labels?.[k!] === v,
        )
        .map(([, o]) => o)
      return send(200, { kind: 'NamespaceList', apiVersion: 'v1', metadata: {}, items })
    }
    if (req.method === 'GET') {
      const o = store.get(url.pathname)
      return o ? send(200, o) : send(404, { kind: 'Status', code: 404, reason: 'NotFound' })
    }
    if (req.method === 'DELETE') {
      for (const p of [...store.keys()])
        if (p === url.pathname || p.startsWith(`${url.pathname}/`)) store.delete(p)
      for (const p of [...store.keys()]) {
        const ns = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(url.pathname)?.[1]
        if (ns && p.includes(`/namespaces/${ns}/`)) store.delete(p)
      }
      return send(200, { kind: 'Status', status: 'Success' })
    }
    send(405, {})
  })
  return { server, store, patches }
}

describe('Kubernetes driver (server-side apply)', () => {
  let dir: string
  let api: ReturnType<typeof fakeApiServer>
  let driver: KubernetesDriver
  const spec = validateSpec(specFor('acme', 1), 'acme')
  const resources: Resources = {
    tenant: 'acme',
    fabric: 'default',
    specVersion: 1,
    asn: 65000,
    vrf: { id: 1001, name: 'Vrf1001', l3vni: 10000, rd: '65000:1001', rt: '65000:1001' },
    networks: [],
    pkeys: { compute: 2, storage: 3 },
    namespaces: [{ cluster: 'k8s-a', name: 't-acme-train', spec: spec.kubernetes.namespaces[0]! }],
    slurm: [],
    firewall: {
      table: 'dflare_perimeter',
      chain: 't_acme',
      src4: 't_acme_src4',
      src6: 't_acme_src6',
      dst4: 't_acme_dst4',
    },
  }
  const desired = renderKubernetes(spec, resources)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dflare-k8s-'))
    api = fakeApiServer()
    await new Promise<void>((r) => api.server.listen(0, '127.0.0.1', r))
    const port = (api.server.address() as AddressInfo).port
    const kubeconfig = join(dir, 'kubeconfig')
    await writeFile(
      kubeconfig,
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          // Plain HTTP on loopback needs skip-tls-verify in client-node; real clusters use TLS.
          {
            name: 'k8s-a',
            cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true },
          },
        ],
        users: [{ name: 'dflare', user: { token: 'test-token' } }],
        contexts: [{ name: 'k8s-a', context: { cluster: 'k8s-a', user: 'dflare' } }],
        'current-context': 'k8s-a',
      }),
    )
    driver = new KubernetesDriver(kubeconfig, new FileDriver('kubernetes', join(dir, 'artifacts')))
  })
  after(async () => {
    api.server.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('applies with server-side apply, observes by subset, repairs drift, deletes', async () => {
    assert.deepEqual(
      driver.plan(desired, await driver.observe('acme', desired)).map((c) => c.action),
      ['create'],
    )
    await driver.apply('acme', desired[0]!)
    assert.ok(api.patches.length >= 6)
    for (const p of api.patches) {
      assert.equal(p.contentType, 'application/apply-patch+yaml')
      assert.equal(p.fieldManager, 'dflare-isolation')
      assert.equal(p.force, 'true')
    }
    assert.deepEqual(
      driver.plan(desired, await driver.observe('acme', desired)),
      [],
      'server-added fields are not drift',
    )

    // Someone loosens the quota by hand: that is drift, and an apply puts it back.
    const quota = api.store.get('/api/v1/namespaces/t-acme-train/resourcequotas/tenant-quota')!
    quota.spec.hard['requests.nvidia.com/gpu'] = '64'
    assert.deepEqual(
      driver.plan(desired, await driver.observe('acme', desired)).map((c) => c.action),
      ['change'],
    )
    await driver.apply('acme', desired[0]!)
    assert.deepEqual(driver.plan(desired, await driver.observe('acme', desired)), [])

    // Dropping the cluster from the spec: observed but not desired, so removed.
    assert.deepEqual(
      driver.plan([], await driver.observe('acme', [])).map((c) => c.action),
      ['remove'],
    )
    await driver.delete('acme', 'k8s-a.yaml')
    assert.equal(api.store.size, 0)
    assert.deepEqual(await driver.observe('acme', []), new Map())
  })
})
