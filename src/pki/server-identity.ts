import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import {
  type CryptoKey,
  generateEcKeyPair,
  privateKeyFromPem,
  privateKeyToPem,
  SIGN_SHA256,
  x509,
} from './keys.ts'

/**
 * The listener identity created on first boot: an internal root CA (ECDSA P-256) and a
 * server certificate for the listen/public hosts, stored under `$DFLARE_HOME/pki` (keys 0600).
 * Later starts reuse both; the server certificate is re-issued when a host is missing or it
 * has less than a third of its lifetime left.
 */
export interface ServerTls {
  /** PEM of the root CA certificate ($DFLARE_HOME/pki/ca.crt). */
  ca: string
  cert: string
  key: string
  caPath: string
}

const CA_YEARS = 10
const SERVER_DAYS = 90
const DAY = 86_400_000

async function writeSecret(path: string, data: string) {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, data, { mode: 0o600 })
  await rename(tmp, path)
  await chmod(path, 0o600)
}

async function writePublic(path: string, data: string) {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, data, { mode: 0o644 })
  await rename(tmp, path)
}

function serial(): string {
  const b = randomBytes(16)
  b[0] = b[0]! & 0x7f // positive INTEGER
  return b.toString('hex')
}

async function createRoot(now: Date) {
  const keys = await generateEcKeyPair()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=Dflare Internal Root CA, O=Dflare',
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_YEARS * 365 * DAY),
    keys,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign |
          x509.KeyUsageFlags.cRLSign |
          x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { cert, key: keys.privateKey }
}

async function issueServer(
  ca: { cert: x509.X509Certificate; key: CryptoKey },
  hosts: readonly string[],
  now: Date,
) {
  const keys = await generateEcKeyPair()
  const names = hosts.map((h) =>
    isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h },
  )
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${hosts[0]}, O=Dflare`,
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + SERVER_DAYS * DAY),
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { cert, key: keys.privateKey }
}

function covers(cert: x509.X509Certificate, hosts: readonly string[], now: Date): boolean {
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime()
  if (cert.notAfter.getTime() - now.getTime() < lifetime / 3) return false
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const have = new Set(san?.names.items.map((n) => n.value.toLowerCase()) ?? [])
  return hosts.every((h) => have.has(h.toLowerCase()))
}

export async function ensureServerTls(options: {
  dir: string
  hosts: readonly string[]
  now?: Date
}): Promise<ServerTls> {
  const { dir, hosts } = options
  const now = options.now ?? new Date()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const paths = {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
  }
  let ca: { cert: x509.X509Certificate; key: CryptoKey }
  if (existsSync(paths.caCert) && existsSync(paths.caKey)) {
    ca = {
      cert: new x509.X509Certificate(await readFile(paths.caCert, 'utf8')),
      key: await privateKeyFromPem(await readFile(paths.caKey, 'utf8')),
    }
  } else {
    ca = await createRoot(now)
    await writeSecret(paths.caKey, await privateKeyToPem(ca.key))
    await writePublic(paths.caCert, ca.cert.toString('pem'))
  }
  let certPem = existsSync(paths.cert) ? await readFile(paths.cert, 'utf8') : undefined
  let keyPem = existsSync(paths.key) ? await readFile(paths.key, 'utf8') : undefined
  if (!certPem || !keyPem || !covers(new x509.X509Certificate(certPem), hosts, now)) {
    const issued = await issueServer(ca, hosts, now)
    certPem = issued.cert.toString('pem')
    keyPem = await privateKeyToPem(issued.key)
    await writeSecret(paths.key, keyPem)
    await writePublic(paths.cert, certPem)
  }
  const caPem = ca.cert.toString('pem')
  return { ca: caPem, cert: `${certPem}\n`, key: keyPem, caPath: paths.caCert }
}
