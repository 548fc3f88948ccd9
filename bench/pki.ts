/**
 * PKI figures: certificate signing rate (intermediate, ECDSA P-256), CRL signing with 1 000
 * entries and its verification by a CrlChecker, and TLS handshakes per second on loopback —
 * mutual TLS with the peer policy (allow-list + CRL) against server-only TLS as the baseline,
 * one new connection per handshake. `npm run bench -- pki --json`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { openCa } from '../src/pki/ca-store.ts'
import { Kek } from '../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from '../src/pki/keys.ts'
import { CrlChecker } from '../src/pki/revocation.ts'
import {
  enforcePeerPolicy,
  mtlsClientOptions,
  mtlsServerOptions,
  serverTlsOptions,
  type TlsIdentity,
} from '../src/pki/tls-policy.ts'

const TD = 'spiffe://dflare.local/component'

async function handshakes(server: tls.Server, client: tls.ConnectionOptions, ms: number) {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  const end = performance.now() + ms
  let n = 0
  while (performance.now() < end) {
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ ...client, host: '127.0.0.1', port })
      s.once('data', () => {
        s.destroy()
        resolve()
      })
      s.once('error', reject)
    })
    n++
  }
  server.close()
  return Math.round((n / ms) * 1000)
}

export default async function (args: string[]) {
  const seconds = Number(args.find((a) => a.startsWith('--seconds='))?.split('=')[1] ?? 3)
  const dir = await mkdtemp(join(tmpdir(), 'dflare-bench-pki-'))
  try {
    const { ca } = await openCa({ dir, kek: new Kek(Buffer.alloc(32, 1), 'env') })
    const keys = await generateEcKeyPair()
    const now = Date.now()
    const validity = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) }

    let issued = 0
    const issueEnd = performance.now() + seconds * 1000
    while (performance.now() < issueEnd) {
      await ca.issue({ kind: 'service', spiffeId: `${TD}/bench` }, keys.publicKey, validity)
      issued++
    }

    const entries = Array.from({ length: 1000 }, (_, i) => ({
      serial: (0x100000 + i).toString(16),
      revokedAt: new Date(now - 1000),
      reason: x509.X509CrlReason.keyCompromise,
    }))
    let t = performance.now()
    const crl = await ca.signCrl({
      entries,
      number: 1,
      thisUpdate: new Date(now - 1000),
      nextUpdate: new Date(now + 3_600_000),
    })
    const crlSignMs = performance.now() - t
    const checker = new CrlChecker({
      rootPem: ca.rootPem,
      refreshMs: 60_000,
      source: async () => ({ crl: crl.toString('pem'), issuers: ca.chainPem }),
    })
    t = performance.now()
    await checker.refresh()
    const crlVerifyMs = performance.now() - t

    const identity = async (name: string): Promise<TlsIdentity> => {
      const k = await generateEcKeyPair()
      const c = await ca.issue(
        { kind: 'service', spiffeId: `${TD}/${name}` },
        k.publicKey,
        validity,
      )
      return { cert: c.chainPem, key: await privateKeyToPem(k.privateKey), ca: ca.rootPem }
    }
    const server = await identity('authz')
    const client = await identity('gateway')
    const mtlsServer = tls.createServer(mtlsServerOptions(server), (s) => s.end('ok'))
    enforcePeerPolicy(mtlsServer, { allowed: [`${TD}/gateway`], revocation: checker })
    const mtls = await handshakes(
      mtlsServer,
      mtlsClientOptions(client, { expectedServer: [`${TD}/authz`] }),
      seconds * 1000,
    )
    const plain = await handshakes(
      tls.createServer(serverTlsOptions(server), (s) => s.end('ok')),
      { ca: ca.rootPem, checkServerIdentity: () => undefined },
      seconds * 1000,
    )
    return {
      certificatesSignedPerSecond: Math.round(issued / seconds),
      crl1000: {
        signMs: Math.round(crlSignMs * 10) / 10,
        verifyAndLoadMs: Math.round(crlVerifyMs * 10) / 10,
      },
      handshakesPerSecond: { mtlsWithPeerPolicy: mtls, serverOnlyTls: plain },
      protocol: 'TLSv1.3, ECDSA P-256, new connection per handshake, loopback',
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
