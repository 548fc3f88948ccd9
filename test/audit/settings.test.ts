import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadDflareConfig } from '../../src/server/config.ts'

const delay = (env: Record<string, string>) =>
  loadDflareConfig({ env }).config.audit.integrationDelay

describe('audit settings', () => {
  it('integrates sooner on the embedded database than on PostgreSQL, unless told otherwise', () => {
    const pg = { DATABASE_URL: 'postgres://dflare@127.0.0.1:1/never-contacted' }
    assert.equal(delay({}), 25)
    assert.equal(delay(pg), 100)
    assert.equal(delay({ DFLARE_AUDIT_INTEGRATION_DELAY: '200ms' }), 200)
    assert.equal(delay({ ...pg, DFLARE_AUDIT_INTEGRATION_DELAY: '10ms' }), 10)
  })
})
