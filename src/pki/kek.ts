import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/**
 * The key-encryption key (KEK) that protects CA private keys at rest (AES-256-GCM). It comes
 * from DFLARE_PKI_KEK, or a file (DFLARE_PKI_KEK_FILE); on the embedded default, with neither
 * set, a random one is generated at $DFLARE_HOME/kek (0600). The key never appears in errors.
 */
export class Kek {
  readonly #key: Buffer
  /** Short public fingerprint, stored with each ciphertext to name a KEK mismatch clearly. */
  readonly id: string
  readonly origin: 'env' | 'file' | 'generated'

  constructor(key: Buffer, origin: Kek['origin']) {
    if (key.length !== 32) throw new Error('the PKI key-encryption key must be 32 bytes')
    this.#key = Buffer.from(key)
    this.origin = origin
    this.id = createHash('sha256').update('dflare-kek-id').update(key).digest('hex').slice(0, 16)
  }

  /** Encrypts `plain`, binding it to `purpose` (AAD) so files cannot be swapped between roles. */
  seal(plain: Uint8Array, purpose: string): string {
    const iv = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', this.#key, iv)
    c.setAAD(Buffer.from(`dflare-pki:${purpose}`))
    const ct = Buffer.concat([c.update(plain), c.final()])
    const sealed: SealedBox = {
      v: 1,
      alg: 'A256GCM',
      kek: this.id,
      purpose,
      iv: iv.toString('base64'),
      ct: ct.toString('base64'),
      tag: c.getAuthTag().toString('base64'),
    }
    return `${JSON.stringify(sealed)}\n`
  }

  open(text: string, purpose: string): Buffer {
    let box: SealedBox
    try {
      box = JSON.parse(text) as SealedBox
    } catch {
      throw new KekError(`the ${purpose} key file is not a sealed key`)
    }
    if (box.v !== 1 || box.alg !== 'A256GCM' || box.purpose !== purpose)
      throw new KekError(`the ${purpose} key file is not a sealed ${purpose} key`)
    if (box.kek !== this.id)
      throw new KekError(
        `the ${purpose} key was encrypted under a different key-encryption key (DFLARE_PKI_KEK / DFLARE_PKI_KEK_FILE)`,
      )
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(box.iv, 'base64'))
      d.setAAD(Buffer.from(`dflare-pki:${purpose}`))
      d.setAuthTag(Buffer.from(box.tag, 'base64'))
      return Buffer.concat([d.update(Buffer.from(box.ct, 'base64')), d.final()])
    } catch {
      throw new KekError(`the ${purpose} key file failed authentication (tampered or corrupt)`)
    }
  }
}

interface SealedBox {
  v: 1
  alg: 'A256GCM'
  kek: string
  purpose: string
  iv: string
  ct: string
  tag: string
}

export class KekError extends Error {
  override name = 'KekError'
}

function decode(text: string, where: string): Buffer {
  const b = Buffer.from(text.trim(), 'base64')
  if (b.length !== 32) throw new KekError(`${where}: expected 32 bytes in base64`)
  return b
}

export interface KekSettings {
  kek?: string | undefined
  kekFile?: string | undefined
}

/** Resolves the KEK from settings; generates `$home/kek` when nothing is configured. */
export async function loadKek(settings: KekSettings, home: string): Promise<Kek> {
  if (settings.kek) return new Kek(decode(settings.kek, 'DFLARE_PKI_KEK'), 'env')
  if (settings.kekFile) return new Kek(await readKekFile(settings.kekFile), 'file')
  const path = defaultKekPath(home)
  if (existsSync(path)) return new Kek(await readKekFile(path), 'file')
  const key = randomBytes(32)
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
  try {
    // link() never replaces: if another process generated one first, use theirs.
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return new Kek(await readKekFile(path), 'file')
  } finally {
    await unlink(tmp)
  }
  return new Kek(key, 'generated')
}

export function defaultKekPath(home: string): string {
  return join(home, 'kek')
}

async function readKekFile(path: string): Promise<Buffer> {
  let info: Awaited<ReturnType<typeof stat>>
  try {
    info = await stat(path)
  } catch {
    throw new KekError(`DFLARE_PKI_KEK_FILE: ${path} does not exist`)
  }
  // A KEK readable by other users protects nothing; refuse rather than warn.
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0)
    throw new KekError(
      `DFLARE_PKI_KEK_FILE: ${path} must not be readable by group or others (chmod 600)`,
    )
  return decode(await readFile(path, 'utf8'), `DFLARE_PKI_KEK_FILE ${path}`)
}

export async function writeSecretFile(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, data, { mode: 0o600 })
  await rename(tmp, path)
  await chmod(path, 0o600)
}

export async function writePublicFile(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, data, { mode: 0o644 })
  await rename(tmp, path)
}
