import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { SettingValueError } from '../../src/core/config/index.ts'
import { Problem } from '../../src/core/errors.ts'
import { parsePools } from '../../src/isolation/pools.ts'
import { parseSpecText, validateSpec } from '../../src/isolation/spec.ts'
import { specFor } from './helpers.ts'

function fields(fn: () => unknown): string[] {
  try {
    fn()
  } catch (e) {
    assert.ok(e instanceof Problem && e.status === 400, String(e))
    return (e.extensions.errors as { field: string }[]).map((x) => x.field)
  }
  assert.fail('expected a validation error')
}

describe('tenant spec', () => {
  test('a full spec validates, YAML and JSON alike', () => {
    const spec = validateSpec(specFor('acme'), 'acme')
    assert.equal(spec.fabric, 'default')
    assert.deepEqual(spec.ingress[0]!.ports, [
      { from: 443, to: 443 },
      { from: 8000, to: 8100 },
    ])
    const yaml = `apiVersion: dflare.dev/v1
kind: TenantIsolation
networks: [{name: compute, cidr: 10.0.0.0/24}]
kubernetes: {clusters: [k8s-a]}
gpuQuota: 4
`
    const s = parseSpecText(yaml, 'acme')
    assert.equal(s.kubernetes.namespaces[0]!.name, 'default')
    assert.equal(s.kubernetes.namespaces[0]!.gpus, 4)
    assert.deepEqual(parseSpecText(JSON.stringify(specFor('acme')), 'acme'), spec)
  })

  test('errors name every bad field', () => {
    // biome-ignore lint/suspicious/noExplicitAny: the test breaks a deep fixture field by field
    const bad = structuredClone(specFor('acme')) as Record<string, any>
    bad.networks.push({ name: 'net0', cidr: '10.0.0.1/24' })
    bad.hostPorts[0].guid = '0x12'
    bad.hostPorts[1].network = 'nope'
    bad.storage.exports[0].path = '../etc'
    bad.ingress.push({ cidr: '0.0.0.0/0', protocol: 'tcp', ports: [22] })
    bad.ingress.push({ cidr: '2001:db8::/32', protocol: 'udp', ports: ['9-1'] })
    bad.kubernetes.namespaces[0].gpus = 99
    bad.slurm.extra = true
    bad.tenant = 'other'
    assert.deepEqual(
      fields(() => validateSpec(bad, 'acme')).sort(),
      [
        'hostPorts[0].guid',
        'hostPorts[1].network',
        'ingress[2].cidr',
        'ingress[3].cidr',
        'ingress[3].ports[0]',
        'kubernetes.namespaces',
        'networks[2].cidr',
        'networks[2]',
        'slurm.extra',
        'storage.exports[0].path',
        'tenant',
      ].sort(),
    )
  })

  test('a spec without a compute layer or networks is rejected', () => {
    const f = fields(() =>
      validateSpec({ apiVersion: 'dflare.dev/v1', kind: 'TenantIsolation' }, 'acme'),
    )
    assert.deepEqual(f.sort(), ['kubernetes.clusters', 'networks'])
  })

  test('bad YAML and YAML tricks are rejected', () => {
    assert.throws(
      () => parseSpecText('a: [', 'acme'),
      (e: Problem) => e.status === 400,
    )
    assert.throws(
      () => parseSpecText('a: &x 1\nb: *x', 'acme'),
      (e: Problem) => e.status === 400,
    )
    assert.throws(
      () => parseSpecText('a: 1\na: 2', 'acme'),
      (e: Problem) => e.status === 400,
    )
  })

  test('tenant names are DNS-label-like', () => {
    assert.ok(fields(() => validateSpec(specFor('Bad_Name'), 'Bad_Name')).includes('tenant'))
  })
})

describe('pool settings', () => {
  test('ranges are checked against each number space; 0x7FFF is never allocatable', () => {
    const p = parsePools('{"site-a":{"vlan":"200-299","pkey":"0x0010-0x00ff"}}')
    assert.deepEqual(p['site-a']!.vlan, { lo: 200, hi: 299 })
    assert.deepEqual(p['site-a']!.pkey, { lo: 0x10, hi: 0xff })
    assert.ok(p.default)
    assert.throws(() => parsePools('{"x":{"pkey":"0x0001-0x7fff"}}'), SettingValueError)
    assert.throws(() => parsePools('{"x":{"pkey":"0x0000-0x0010"}}'), SettingValueError)
    assert.throws(() => parsePools('{"x":{"vlan":"1-4095"}}'), SettingValueError)
    assert.throws(() => parsePools('{"x":{"vrf":"10-5"}}'), SettingValueError)
    assert.throws(() => parsePools('{"x":{"bogus":"1-2"}}'), SettingValueError)
    assert.throws(() => parsePools('nope'), SettingValueError)
  })
})
