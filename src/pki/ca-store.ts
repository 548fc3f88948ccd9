import { createPrivateKey } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { CertificateAuthority, newSerial } from './issuer.ts'
import { type Kek, KekError, writePublicFile, writeSecretFile } from './kek.ts'
import {
  type CryptoKey,
  generateEcKeyPair,
  keyMatchesCertificate,
  privateKeyFromDer,
  privateKeyFromPem,
  privateKeyToDer,
  SIGN_SHA256,
  x509,
} from './keys.ts'

/**
 * The two-level CA on disk under `$DFLARE_HOME/pki`:
 *
 *   ca.crt                 root certificate (public; what every peer trusts)
 *   root.key.enc           root key sealed under the KEK; absent once the root is taken offline
 *   intermediate.crt       online signing CA certificate
 *   intermediate.key.enc   its key sealed under the KEK
 *
 * The root only signs intermediates. `exportRoot` + `removeRoot` take it out of the running
 * system; issuance keeps working with the intermediate until it needs renewing.
 */
const DAY = 86_400_000
const ROOT_DAYS = 3650
const INTERMEDIATE_DAYS = 365

export function caPaths(dir: string) {
  return {
    rootCert: join(dir, 'ca.crt'),
    rootKey: join(dir, 'root.key.enc'),
    intermediateCert: join(dir, 'intermediate.crt'),
    intermediateKey: join(dir, 'intermediate.key.enc'),
    /** Plaintext root key written by the first server version; sealed and deleted on open. */
    legacyRootKey: join(dir, 'ca.key'),
  }
}

export class CaError extends Error {
  override name = 'CaError'
}

export interface OpenedCa {
  ca: CertificateAuthority
  /** Whether the root key is present on this system. */
  rootOnline: boolean
  /** Human-readable notices, e.g. an intermediate near expiry with the root offline. */
  notices: string[]
}

async function sealKey(kek: Kek, path: string, key: CryptoKey, purpose: string) {
  await writeSecretFile(path, kek.seal(await privateKeyToDer(key), purpose))
}

async function unsealKey(kek: Kek, path: string, purpose: string): Promise<CryptoKey> {
  return privateKeyFromDer(kek.open(await readFile(path, 'utf8'), purpose))
}

async function createRoot(now: Date) {
  const keys = await generateEcKeyPair()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: [{ CN: ['Dflare Internal Root CA'] }, { O: ['Dflare'] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + ROOT_DAYS * DAY),
    keys,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { cert, key: keys.privateKey }
}

async function createIntermediate(root: { cert: x509.X509Certificate; key: CryptoKey }, now: Date) {
  const keys = await generateEcKeyPair()
  const notAfter = Math.min(now.getTime() + INTERMEDIATE_DAYS * DAY, root.cert.notAfter.getTime())
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: newSerial(),
    subject: [
      { CN: [`Dflare Intermediate CA ${now.toISOString().slice(0, 10)}`] },
      { O: ['Dflare'] },
    ],
    issuer: root.cert.subjectName,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(notAfter),
    publicKey: keys.publicKey,
    signingKey: root.key,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      // pathLen 0: the intermediate signs leaves only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign |
          x509.KeyUsageFlags.cRLSign |
          x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { cert, key: keys.privateKey }
}

function lowOnLife(cert: x509.X509Certificate, now: Date): boolean {
  const life = cert.notAfter.getTime() - cert.notBefore.getTime()
  return cert.notAfter.getTime() - now.getTime() < life / 3
}

async function readCert(path: string) {
  return new x509.X509Certificate(await readFile(path, 'utf8'))
}

/**
 * Opens the CA, creating root and intermediate on first boot and renewing the intermediate
 * (when the root is online) once it has less than a third of its life left.
 */
export async function openCa(options: { dir: string; kek: Kek; now?: Date }): Promise<OpenedCa> {
  const { dir, kek } = options
  const now = options.now ?? new Date()
  const p = caPaths(dir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const notices: string[] = []

  if (existsSync(p.legacyRootKey) && !existsSync(p.rootKey)) {
    await sealKey(
      kek,
      p.rootKey,
      await privateKeyFromPem(await readFile(p.legacyRootKey, 'utf8')),
      'root',
    )
  }
  if (existsSync(p.legacyRootKey)) await rm(p.legacyRootKey)

  let root: { cert: x509.X509Certificate; key?: CryptoKey }
  if (!existsSync(p.rootCert)) {
    if (existsSync(p.intermediateCert))
      throw new CaError(`${p.rootCert} is missing while an intermediate exists; restore it`)
    const created = await createRoot(now)
    await sealKey(kek, p.rootKey, created.key, 'root')
    await writePublicFile(p.rootCert, created.cert.toString('pem'))
    root = created
  } else {
    root = { cert: await readCert(p.rootCert) }
    if (existsSync(p.rootKey)) root.key = await unsealKey(kek, p.rootKey, 'root')
  }

  let inter: { cert: x509.X509Certificate; key: CryptoKey } | undefined
  if (existsSync(p.intermediateCert) && existsSync(p.intermediateKey)) {
    inter = {
      cert: await readCert(p.intermediateCert),
      key: await unsealKey(kek, p.intermediateKey, 'intermediate'),
    }
    if (!(await inter.cert.verify({ publicKey: root.cert, date: now })))
      throw new CaError('intermediate.crt is not signed by ca.crt or is outside its validity')
  }
  if (!inter || lowOnLife(inter.cert, now)) {
    if (root.key) {
      inter = await createIntermediate({ cert: root.cert, key: root.key }, now)
      await sealKey(kek, p.intermediateKey, inter.key, 'intermediate')
      await writePublicFile(p.intermediateCert, inter.cert.toString('pem'))
    } else if (!inter) {
      throw new CaError(
        'no intermediate CA and the root key is offline: run `dflare pki root import` to create one',
      )
    } else {
      notices.push(
        `the intermediate CA expires ${inter.cert.notAfter.toISOString()}; import the root key (dflare pki root import) to renew it`,
      )
    }
  }
  return {
    ca: new CertificateAuthority(root.cert, inter.cert, inter.key),
    rootOnline: root.key !== undefined,
    notices,
  }
}

/** The root key as encrypted PKCS#8 PEM (AES-256-CBC, PBKDF2) under a passphrase. */
export async function exportRoot(dir: string, kek: Kek, passphrase: string): Promise<string> {
  if (passphrase.length < 12)
    throw new CaError('the export passphrase needs at least 12 characters')
  const p = caPaths(dir)
  if (!existsSync(p.rootKey))
    throw new CaError('the root key is not on this system (already removed)')
  const der = kek.open(await readFile(p.rootKey, 'utf8'), 'root')
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase })
    .toString()
}

/** Deletes the root key from this system; the intermediate keeps issuing. */
export async function removeRoot(dir: string): Promise<boolean> {
  const p = caPaths(dir)
  if (!existsSync(p.intermediateCert))
    throw new CaError('no intermediate CA; refusing to remove the root')
  if (!existsSync(p.rootKey)) return false
  await rm(p.rootKey)
  return true
}

/** Brings an exported root key back (it must match ca.crt), e.g. to renew the intermediate. */
export async function importRoot(dir: string, kek: Kek, pem: string, passphrase: string) {
  const p = caPaths(dir)
  let der: Buffer
  try {
    der = createPrivateKey({ key: pem, format: 'pem', passphrase }).export({
      format: 'der',
      type: 'pkcs8',
    })
  } catch {
    throw new CaError('cannot decrypt the root key (wrong passphrase or not a PKCS#8 key)')
  }
  let key: CryptoKey
  try {
    key = await privateKeyFromDer(der)
  } catch {
    throw new CaError('the imported key is not an ECDSA P-256 key')
  }
  if (!(await keyMatchesCertificate(key, await readCert(p.rootCert))))
    throw new CaError('the imported key does not belong to ca.crt')
  await sealKey(kek, p.rootKey, key, 'root')
}

/** Replaces the intermediate now (root must be online); e.g. after suspected compromise. */
export async function rotateIntermediate(dir: string, kek: Kek, now = new Date()) {
  const p = caPaths(dir)
  if (!existsSync(p.rootKey)) throw new CaError('the root key is offline; import it first')
  const root = { cert: await readCert(p.rootCert), key: await unsealKey(kek, p.rootKey, 'root') }
  const inter = await createIntermediate(root, now)
  await sealKey(kek, p.intermediateKey, inter.key, 'intermediate')
  await writePublicFile(p.intermediateCert, inter.cert.toString('pem'))
  return inter.cert
}

export { KekError }
