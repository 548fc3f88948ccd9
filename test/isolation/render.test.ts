import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1'
import { LimitRange, Namespace, ResourceQuota } from 'kubernetes-models/v1'
import YAML from 'yaml'
import { type Harness, harness, operator, specFor } from './helpers.ts'

const TENANTS = ['acme', 'beta', 'gamma']

/** Minimal OpenSM partitions.conf parser enforcing the subnet manager's PKey rules. */
function parsePartitions(text: string) {
  const parts: { name: string; pkey: number; flags: string[]; members: Map<string, string> }[] = []
  const body = text
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join('\n')
  const statements = body.split(';').map((s) => s.trim())
  assert.equal(statements.pop(), '', 'every partition definition ends with ;')
  for (const st of statements) {
    const m =
      /^([A-Za-z0-9_]+)=(0x[0-9a-fA-F]{1,4})((?:\s*,\s*[a-z_]+(?:=[a-z0-9]+)?)*)\s*:\s*([\s\S]*)$/.exec(
        st,
      )
    assert.ok(m, `not a partition definition: ${st}`)
    const pkey = Number(m[2]) & 0x7fff
    assert.ok(pkey >= 0x0001 && pkey <= 0x7ffe, `PKey ${m[2]} outside 0x0001-0x7FFE`)
    const flags = m[3]!
      .split(',')
      .map((f) => f.trim())
      .filter(Boolean)
    for (const f of flags)
      assert.match(f, /^(ipoib|defmember=(full|limited|both)|mtu=\d+|rate=\d+|sl=\d+)$/)
    const members = new Map<string, string>()
    for (const item of m[4]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const g = /^(0x[0-9a-fA-F]{1,16})(?:=(full|limited|both))?$/.exec(item)
      assert.ok(g, `bad port GUID entry ${item}`)
      assert.ok(!members.has(g[1]!.toLowerCase()), `GUID ${g[1]} listed twice in ${m[1]}`)
      members.set(g[1]!.toLowerCase(), g[2] ?? 'limited')
    }
    parts.push({ name: m[1]!, pkey, flags, members })
  }
  return parts
}

function nftUsable(): string | undefined {
  if (spawnSync('nft', ['--version']).status !== 0)
    return 'nft is not installed (apt-get install -y nftables)'
  if (spawnSync('unshare', ['-n', 'true']).status !== 0)
    return 'cannot create a network namespace (unshare -n)'
  return undefined
}

describe('rendered artifacts', () => {
  let h: Harness
  const read = (tenant: string, path: string) => readFile(join(h.dir, tenant, path), 'utf8')
  before(async () => {
    h = await harness()
    for (const [i, t] of TENANTS.entries())
      await h.service.apply(operator, t, { spec: specFor(t, i) })
  })
  after(() => h.close())

  test('Kubernetes manifests validate against the Kubernetes API schemas', async () => {
    const kinds = new Map<string, number>()
    for (const t of TENANTS) {
      const docs = YAML.parseAllDocuments(await read(t, 'kubernetes/k8s-a.yaml')).map((d) =>
        d.toJSON(),
      )
      for (const doc of docs) {
        kinds.set(doc.kind, (kinds.get(doc.kind) ?? 0) + 1)
        const Model = { Namespace, ResourceQuota, LimitRange, NetworkPolicy, RoleBinding }[
          doc.kind as string
        ]
        assert.ok(Model, `unexpected kind ${doc.kind}`)
        new Model(doc).validate()
        if (doc.kind !== 'Namespace') assert.equal(doc.metadata.namespace, `t-${t}-train`)
      }
      const ns = docs.find((d) => d.kind === 'Namespace')
      assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted')
      const quota = docs.find((d) => d.kind === 'ResourceQuota')
      assert.equal(quota.spec.hard['requests.nvidia.com/gpu'], '8')
      const deny = docs.find((d) => d.metadata.name === 'default-deny')
      assert.deepEqual(deny.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })
      const dns = docs.find((d) => d.metadata.name === 'allow-dns')
      assert.deepEqual(
        dns.spec.egress[0].ports.map((p: { port: number }) => p.port),
        [53, 53],
      )
      const subjects = docs.filter((d) => d.kind === 'RoleBinding').map((d) => d.subjects[0].name)
      assert.deepEqual(subjects.sort(), [`dflare:${t}:admins`, `dflare:${t}:ml`])
    }
    assert.deepEqual(Object.fromEntries(kinds), {
      Namespace: 3,
      ResourceQuota: 3,
      LimitRange: 3,
      NetworkPolicy: 9,
      RoleBinding: 6,
    })
    // The schema check is real: a malformed object is rejected.
    assert.throws(() =>
      new NetworkPolicy({
        metadata: { name: 'x' },
        spec: { policyTypes: 'Ingress' },
      } as never).validate(),
    )
  })

  test('partitions.conf follows the OpenSM PKey rules, and no PKey or partition is shared', async () => {
    const text = (
      await Promise.all(TENANTS.map((t) => read(t, 'infiniband/partitions.conf')))
    ).join('')
    const parts = parsePartitions(text)
    assert.equal(parts.length, 6)
    assert.equal(new Set(parts.map((p) => p.pkey)).size, 6, 'PKeys are unique')
    assert.equal(new Set(parts.map((p) => p.name)).size, 6, 'partition names are unique')
    assert.ok(parts.every((p) => p.pkey !== 0x7fff))
    const acme = parts.find((p) => p.name === 't_acme')!
    const acmeStorage = parts.find((p) => p.name === 't_acme_storage')!
    const host = specFor('acme', 0).hostPorts[0]!.guid
    assert.equal(acme.members.get(host), 'full')
    assert.equal(
      acme.members.get('0x0002c90300000001'),
      'limited',
      'shared service ports are limited',
    )
    assert.equal(acmeStorage.members.get('0x0002c90300000002'), 'full', 'storage servers are full')
    assert.equal(acmeStorage.members.get(host), 'limited', 'hosts are limited on the storage PKey')
    // A tenant's host appears in no other tenant's partition.
    for (const p of parts.filter((p) => !p.name.startsWith('t_acme')))
      assert.ok(!p.members.has(host))
    assert.throws(() => parsePartitions('bad=0x7fff : ;'))
    const ufm = JSON.parse(await read('acme', 'infiniband/ufm.json'))
    assert.equal(ufm[0].path, '/ufmRest/resources/pkeys')
    assert.match(ufm[0].body.pkey, /^0x[0-9a-f]{4}$/)
  })

  test('nftables JSON passes nft -c -j -f in a network namespace', async (t) => {
    const why = nftUsable()
    if (why) {
      t.skip(`SKIPPED: ${why}`)
      return
    }
    const rulesets = await Promise.all(
      TENANTS.map(async (n) => JSON.parse(await read(n, 'firewall/ruleset.json'))),
    )
    for (const r of rulesets) {
      const chain = r.nftables.find(
        (o: { chain?: { hook?: string } }) => o.chain?.hook === 'forward',
      ).chain
      assert.equal(chain.policy, 'drop')
    }
    // All tenants loaded together: the shared table and base chain merge, tenant sets stay apart.
    const all = {
      nftables: [rulesets[0].nftables[0], ...rulesets.flatMap((r) => r.nftables.slice(1))],
    }
    const file = join(h.dir, 'all.json')
    await writeFile(file, JSON.stringify(all))
    execFileSync('unshare', ['-n', 'nft', '-c', '-j', '-f', file], { stdio: 'pipe' })
    const sets = all.nftables
      .filter((o: { set?: unknown }) => o.set)
      .map((o: { set: { name: string } }) => o.set.name)
    assert.equal(new Set(sets).size, sets.length, 'set names are per tenant')
    // And nft rejects a broken ruleset, so the check is real.
    await writeFile(
      file,
      JSON.stringify({
        nftables: [{ rule: { family: 'inet', table: 'nope', chain: 'x', expr: [] } }],
      }),
    )
    assert.throws(() =>
      execFileSync('unshare', ['-n', 'nft', '-c', '-j', '-f', file], { stdio: 'pipe' }),
    )
  })

  test('NVUE parses as YAML, SONiC as JSON, EOS has the tenant VRF, all with the expected keys', async () => {
    const fabric = JSON.parse(await read('acme', 'ethernet/fabric.json'))
    const [leaf] = fabric.leaves
    const nvue = YAML.parse(await read('acme', `ethernet/nvue/${leaf}.yaml`))
    const set = nvue[0].set
    const vrf = set.vrf[fabric.vrf.name]
    assert.ok(vrf.evpn.vni[String(fabric.vrf.l3vni)])
    assert.equal(vrf.router.bgp.rd, fabric.vrf.rd)
    assert.ok(vrf.router.bgp['route-import']['from-evpn']['route-target'][fabric.vrf.rt])
    const vlan = fabric.networks[0].vlan
    assert.ok(set.bridge.domain.br_default.vlan[String(vlan)].vni[String(fabric.networks[0].l2vni)])
    assert.equal(set.interface[`vlan${vlan}`].ip.vrf, fabric.vrf.name)
    const sonic = JSON.parse(await read('acme', `ethernet/sonic/${leaf}.json`))
    for (const k of ['VRF', 'VLAN', 'VLAN_MEMBER', 'VLAN_INTERFACE', 'VXLAN_TUNNEL_MAP'])
      assert.ok(sonic[k], `SONiC table ${k}`)
    assert.equal(sonic.VRF[fabric.vrf.name].vni, String(fabric.vrf.l3vni))
    assert.equal(sonic.VLAN[`Vlan${vlan}`].vlanid, String(vlan))
    const eos = await read('acme', `ethernet/eos/${leaf}.cfg`)
    assert.match(eos, new RegExp(`^vrf instance ${fabric.vrf.name}$`, 'm'))
    assert.match(eos, new RegExp(`^   vxlan vrf ${fabric.vrf.name} vni ${fabric.vrf.l3vni}$`, 'm'))
  })

  test('Slurm and storage artifacts carry the isolation controls', async () => {
    const conf = await read('acme', 'slurm/hpc-a/slurm.conf')
    assert.match(conf, /^PartitionName=acme Nodes=acme-node1 AllowAccounts=acme AllowQos=acme /m)
    const cg = await read('acme', 'slurm/hpc-a/cgroup.conf')
    for (const l of [
      'CgroupPlugin=cgroup/v2',
      'ConstrainCores=yes',
      'ConstrainDevices=yes',
      'ConstrainRAMSpace=yes',
    ])
      assert.ok(cg.split('\n').includes(l), l)
    const sacct = await read('acme', 'slurm/hpc-a/sacctmgr.txt')
    assert.match(sacct, /^sacctmgr -i add qos acme GrpTRES=gres\/gpu=8 /m)
    assert.match(sacct, /^sacctmgr -i add account acme Cluster=hpc-a /m)
    const acl = JSON.parse(await read('acme', 'storage/acl.json'))
    assert.match(acl.storagePkey, /^0x[0-9a-f]{4}$/)
    assert.deepEqual(acl.exports[0].networks, [specFor('acme', 0).networks[0]!.cidr])
    const exportsFile = await read('acme', 'storage/exports')
    assert.match(exportsFile, /^\/exports\/acme\/datasets 10\.1\.0\.0\/24\(ro,sync,root_squash/m)
  })
})
