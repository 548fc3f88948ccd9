/**
 * Token endpoint throughput of one realm on one Node process (one core for the server; the load
 * generator shares it, so figures are conservative): client-credentials grants/s and refresh
 * grants/s (each refresh rotates its token, with reuse detection). Peer: Keycloak's published
 * sizing of 120 client-credentials and 120 refresh grants per second per vCPU.
 */
import { cpus } from 'node:os'
import { createClient } from '../src/iam/admin/clients.ts'
import { createUser } from '../src/iam/admin/users.ts'
import { OPERATOR, seedRealm, startHarness } from '../test/iam/harness.ts'
import { testEngine } from '../test/support/db.ts'

const arg = (args: string[], name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : fallback
}

export default async function tokenBench(args: string[]) {
  const seconds = arg(args, 'seconds', 8)
  const concurrency = arg(args, 'concurrency', 8)
  const h = await startHarness()
  try {
    const { clientSecret } = await seedRealm(h, 'bench')
    await createClient(h.iam.admin, OPERATOR, 'bench', {
      clientId: 'app',
      name: 'app',
      authMethod: 'none',
      redirectUris: ['https://app.example/cb'],
    })
    const user = await createUser(h.iam.admin, OPERATOR, 'bench', { username: 'bencher' })
    const tokenUrl = `${h.issuer('bench').href}/token`
    const basic = `Basic ${Buffer.from(`svc:${clientSecret}`).toString('base64')}`
    const post = (body: Record<string, string>, auth?: string) =>
      h.fetch(tokenUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(auth ? { authorization: auth } : {}),
        },
        body: new URLSearchParams(body).toString(),
      })

    async function run(step: (worker: number) => Promise<void>) {
      let done = 0
      let errors = 0
      const cpu0 = process.cpuUsage()
      const end = performance.now() + seconds * 1000
      await Promise.all(
        Array.from({ length: concurrency }, async (_, w) => {
          while (performance.now() < end) {
            try {
              await step(w)
              done++
            } catch {
              errors++
            }
          }
        }),
      )
      const cpu = process.cpuUsage(cpu0)
      const cpuSeconds = (cpu.user + cpu.system) / 1e6
      return {
        perSecond: Math.round(done / seconds),
        // Grants per CPU-second of this process (server, embedded database and load generator):
        // what one dedicated core sustains, independent of other load on the machine.
        perCore: Math.round(done / cpuSeconds),
        errors,
      }
    }

    // Warm up (provider build, JIT).
    for (let i = 0; i < 20; i++)
      await post({ grant_type: 'client_credentials', scope: 'api' }, basic)
    const cc = await run(async () => {
      const r = await post({ grant_type: 'client_credentials', scope: 'api' }, basic)
      if (r.status !== 200) throw new Error(String(r.status))
      await r.arrayBuffer()
    })

    // One refresh-token chain per worker, minted as a completed login would have.
    const provider = (await h.iam.provider('bench'))!
    const appClient = await provider.Client.find('app')
    const audience = h.iam.service.apiAudience
    const chains = await Promise.all(
      Array.from({ length: concurrency }, async () => {
        const grant = new provider.Grant({ accountId: user.id, clientId: 'app' })
        grant.addOIDCScope('openid')
        grant.addResourceScope(audience, 'api')
        const grantId = await grant.save()
        const rt = new (
          provider as unknown as { RefreshToken: new (p: object) => { save(): Promise<string> } }
        ).RefreshToken({
          accountId: user.id,
          client: appClient,
          grantId,
          gty: 'authorization_code',
          scope: 'openid api',
          resource: audience,
          authTime: Math.floor(Date.now() / 1000),
          amr: ['pwd'],
          iiat: Math.floor(Date.now() / 1000),
        })
        return rt.save()
      }),
    )
    const refresh = await run(async (w) => {
      const r = await post({
        grant_type: 'refresh_token',
        refresh_token: chains[w]!,
        client_id: 'app',
      })
      if (r.status !== 200) throw new Error(String(r.status))
      chains[w] = ((await r.json()) as { refresh_token: string }).refresh_token
    })

    return {
      engine: testEngine,
      seconds,
      concurrency,
      cpuModel: cpus()[0]?.model,
      clientCredentials: {
        grantsPerSecond: cc.perSecond,
        perCore: cc.perCore,
        errors: cc.errors,
      },
      refresh: {
        grantsPerSecond: refresh.perSecond,
        perCore: refresh.perCore,
        errors: refresh.errors,
      },
      loadAverage: (await import('node:os')).loadavg()[0],
      note: 'perCore = grants per CPU-second of the one process (server + embedded db + load generator); grantsPerSecond is wall-clock on a shared machine',
      peer: {
        name: 'Keycloak (published sizing)',
        clientCredentialsPerVcpu: 120,
        refreshPerVcpu: 120,
      },
    }
  } finally {
    await h.close()
  }
}
