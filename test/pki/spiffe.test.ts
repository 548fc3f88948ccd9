import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { componentId, parseSpiffeId } from '../../src/pki/spiffe.ts'

test('SPIFFE ids: only the two documented shapes parse, and parsing round-trips', () => {
  assert.equal(parseSpiffeId(componentId('dflare.local', 'gateway'))?.kind, 'component')
  for (const bad of [
    'spiffe://dflare.local/component/Gateway',
    'spiffe://dflare.local/component/gw/extra',
    'spiffe://dflare.local/tenant/acme',
    'spiffe://dflare.local/tenant/acme/../x',
    'spiffe://dflare.local/tenant/acme/./x',
    'spiffe://dflare.local/tenant/acme//x',
    'spiffe://dflare.local/tenant/acme/x?y',
    'spiffe://dflare.local/tenant/acme/x#y',
    'spiffe://user@dflare.local/component/gw',
    'spiffe://dflare.local:443/component/gw',
    'spiffe://DFLARE.local/component/gw',
    'SPIFFE://dflare.local/component/gw',
    'spiffe://dflare.local/component/gw/',
    'spiffe://dflare.local/tenant/acme/x%2F..',
  ])
    assert.equal(parseSpiffeId(bad), undefined, bad)
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (s) => {
      const id = parseSpiffeId(`spiffe://dflare.local/${s}`)
      if (!id) return true
      // Whatever parses names exactly one of the two kinds, with no traversal segments.
      if (id.kind === 'tenant')
        return !id.path.includes('..') && !id.path.includes('.') && id.tenant.length > 0
      return id.uri === componentId('dflare.local', id.name)
    }),
  )
})
