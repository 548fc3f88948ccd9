import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Revisions } from '../../src/core/revisions.ts'
import { httpsRequest } from '../support/https.ts'
import { startTestServer, type TestServer } from '../support/server.ts'

const TENANT = 'opt'

/**
 * Reads are served optimistically: the gateway's checks use the in-memory IAM and authz state
 * without first reading the revisions, and the request's first transaction validates them with
 * its BEGIN. These tests make the in-memory state stale on purpose — a change committed without
 * its notification, so the cache never hears of it — and check that no stale answer leaves.
 */
for (const optimistic of [true, false])
  describe(`gateway reads with DFLARE_GATEWAY_OPTIMISTIC_READS=${optimistic}`, () => {
    let server: TestServer
    let admin: string
    let token: string
    let accountSecret: string
    let tenantIssuer: string

    const call = (method: string, path: string, bearer: string, body?: unknown) =>
      httpsRequest(new URL(path, server.url), {
        method,
        ca: server.caPem,
        headers: {
          authorization: `Bearer ${bearer}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    const list = () => call('GET', `/api/v1/tenants/${TENANT}/clusters`, token)

    async function clientCredentials(issuer: string, clientId: string, secret: string) {
      const discovery = await httpsRequest(`${issuer}/.well-known/openid-configuration`, {
        ca: server.caPem,
      })
      const r = await httpsRequest(discovery.json().token_endpoint as string, {
        method: 'POST',
        ca: server.caPem,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
        },
        body: 'grant_type=client_credentials&scope=api',
      })
      assert.equal(r.status, 200, r.body)
      return r.json().access_token as string
    }

    const binding = {
      principal: { type: 'ServiceAccount', id: 'opt-client' },
      role: 'viewer',
      scope: { type: 'Tenant' },
    }

    /** A committed change the caches are never told about (no NOTIFY): they stay behind. */
    async function silently(sql: string, params: unknown[] = []) {
      await server.plane.runtime.db.transaction(async (tx) => {
        await tx.query('UPDATE authz.state SET revision = revision + 1 WHERE singleton')
        if (sql) await tx.query(sql, params as never)
      })
    }

    async function retries(): Promise<number> {
      const m = await server.plane.runtime.metrics.getSingleMetric(
        'dflare_gateway_optimistic_retries_total',
      )
      return (await m!.get()).values[0]?.value ?? 0
    }

    async function auditOf(correlationId: string) {
      const r = await call('GET', `/api/v1/audit/events?correlationId=${correlationId}`, admin)
      assert.equal(r.status, 200, r.body)
      return r.json().events as { event: { outcome: string; action: string } }[]
    }

    before(async () => {
      server = await startTestServer({ DFLARE_GATEWAY_OPTIMISTIC_READS: String(optimistic) })
      const boot = JSON.parse(await readFile(join(server.home, 'bootstrap.json'), 'utf8'))
      admin = await clientCredentials(boot.issuer, boot.client_id, boot.client_secret)
      assert.equal((await call('POST', '/api/v1/tenants', admin, { id: TENANT })).status, 201)
      const account = await call('POST', `/api/v1/tenants/${TENANT}/service-accounts`, admin, {
        clientId: 'opt-client',
        name: 'opt',
      })
      assert.equal(account.status, 201, account.body)
      accountSecret = account.json().clientSecret
      const bound = await call('POST', `/api/v1/tenants/${TENANT}/role-bindings`, admin, binding)
      assert.equal(bound.status, 201, bound.body)
      tenantIssuer = boot.issuer.replace(/\/realms\/platform$/, `/realms/${TENANT}`)
      token = await clientCredentials(tenantIssuer, 'opt-client', accountSecret)
    })
    after(() => server.close())

    it('steady state: reads are validated without a revision read of their own, no retry', async () => {
      assert.equal((await list()).status, 200)
      const before = await retries()
      // Count the revision reads: made on their own statement, or offered to a BEGIN.
      const { readNow, sql } = Revisions.prototype
      let ownReads = 0
      let offered = 0
      Revisions.prototype.readNow = function (this: Revisions) {
        ownReads++
        return readNow.call(this)
      }
      Revisions.prototype.sql = function (this: Revisions) {
        offered++
        return sql.call(this)
      }
      try {
        for (let i = 0; i < 5; i++) assert.equal((await list()).status, 200)
      } finally {
        Object.assign(Revisions.prototype, { readNow, sql })
      }
      assert.equal(await retries(), before)
      if (server.plane.runtime.db.soleWriter) {
        // The embedded database: the revisions are known from their triggers' announcements.
        assert.equal(ownReads, 0, 'no revision read')
        assert.equal(offered, 0, 'no revision read with a BEGIN either')
      } else if (optimistic) {
        assert.equal(ownReads, 0, 'validated by the piggybacked read')
        assert.ok(offered >= 5, 'each read offered to its BEGIN')
      } else assert.ok(ownReads >= 1, 'the strict path reads the revisions first')
    })

    it('a cache behind an unrelated change: the read is redone strictly and still answered', async () => {
      const before = await retries()
      await silently('')
      assert.equal((await list()).status, 200)
      assert.equal(await retries(), before + (optimistic ? 1 : 0))
    })

    it('a cache behind a removed role binding: no stale allow, the denial is audited once', async () => {
      assert.equal((await list()).status, 200)
      const before = await retries()
      await silently(
        `DELETE FROM authz.role_bindings WHERE tenant = $1 AND principal_type = 'ServiceAccount'
           AND principal_id = 'opt/opt-client'`,
        [TENANT],
      )
      const r = await list()
      assert.equal(r.status, 403, r.body)
      assert.ok(!r.body.includes('"items"'), 'no data in the refusal')
      assert.equal(await retries(), before + (optimistic ? 1 : 0))
      const events = await auditOf(r.headers['x-correlation-id'] as string)
      assert.deepEqual(
        events.map((e) => [e.event.action, e.event.outcome]),
        [['cluster.list', 'denied']],
      )
    })

    it('a cache behind a new role binding: the read is allowed (a refusal is only given on fresh state)', async () => {
      await server.plane.runtime.db.transaction(async (tx) => {
        await tx.query('UPDATE authz.state SET revision = revision + 1 WHERE singleton')
        await tx.query(
          `INSERT INTO authz.role_bindings (tenant, principal_type, principal_id, role, scope_type, scope_id)
           VALUES ($1, 'ServiceAccount', 'opt/opt-client', 'viewer', 'Tenant', $1)`,
          [TENANT],
        )
      })
      const r = await list()
      assert.equal(r.status, 200, r.body)
    })

    /** Revokes the token with its triggers (and so its NOTIFY) switched off. */
    async function revokeSilently(bearer: string) {
      const jti = JSON.parse(Buffer.from(bearer.split('.')[1]!, 'base64url').toString()).jti
      await server.plane.runtime.db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        await tx.query('UPDATE iam.state SET revision = revision + 1 WHERE singleton')
        await tx.query(
          `INSERT INTO iam.revoked_tokens (jti, realm, expires_at)
           VALUES ($1, $2, now() + interval '10 minutes')`,
          [jti, TENANT],
        )
      })
    }

    for (const [what, path] of [
      ['a list', `/api/v1/tenants/${TENANT}/clusters`],
      ['a missing resource (never 404)', `/api/v1/tenants/${TENANT}/clusters/no-such-cluster`],
      ['a malformed query (never 400)', `/api/v1/tenants/${TENANT}/clusters?limit=many`],
    ] as const)
      it(`a cache behind a revoked token: ${what} is refused with 401 and nothing else`, async () => {
        const bearer = await clientCredentials(tenantIssuer, 'opt-client', accountSecret)
        assert.equal((await call('GET', `/api/v1/tenants/${TENANT}/clusters`, bearer)).status, 200)
        await revokeSilently(bearer)
        const r = await call('GET', path, bearer)
        assert.equal(r.status, 401, r.body)
        assert.ok(!r.body.includes('"items"'))
        assert.ok(!r.body.includes('no-such-cluster'))
      })
  })
