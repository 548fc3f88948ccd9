import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { chmod, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * The key-encryption key: AES-256-GCM over every secret the iam module stores (signing keys,
 * client secrets, TOTP secrets). The associated data binds a ciphertext to its row, so a
 * ciphertext copied into another row (another realm, another key id) does not decrypt.
 */
export interface Sealer {
  seal(plaintext: Buffer | string, aad: string): Buffer
  open(sealed: Buffer, aad: string): Buffer
}

const VERSION = 1

export function createSealer(key: Buffer): Sealer {
  if (key.length !== 32) throw new Error('key-encryption key must be 32 bytes')
  return {
    seal(plaintext, aad) {
      const iv = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', key, iv)
      c.setAAD(Buffer.from(aad))
      const body = Buffer.concat([c.update(plaintext), c.final()])
      return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), body])
    },
    open(sealed, aad) {
      if (sealed.length < 29 || sealed[0] !== VERSION) throw new Error('sealed value is malformed')
      const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13))
      d.setAAD(Buffer.from(aad))
      d.setAuthTag(sealed.subarray(13, 29))
      return Buffer.concat([d.update(sealed.subarray(29)), d.final()])
    },
  }
}

async function readKekFile(path: string): Promise<Buffer> {
  const st = await stat(path)
  // A KEK readable by other users protects nothing: refuse rather than warn.
  if ((st.mode & 0o077) !== 0) throw new Error(`${path} must not be readable by group or others`)
  const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64')
  if (key.length !== 32) throw new Error(`${path} does not hold a 32-byte key`)
  return key
}

export interface KekSource {
  /** `iam.keyEncryptionKey`: the key itself, base64. */
  key?: string | undefined
  /** `iam.keyEncryptionKeyFile`: a file holding it. */
  file?: string | undefined
}

/**
 * The KEK from the setting, else from the configured file, else from `$DFLARE_HOME/iam/kek`
 * (created 0600 on first use). A key file readable by others is refused rather than used.
 */
export async function loadKek(home: string, source: KekSource = {}): Promise<Buffer> {
  if (source.key) return Buffer.from(source.key, 'base64')
  if (source.file) {
    try {
      return await readKekFile(source.file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new Error(`DFLARE_IAM_KEK_FILE: ${source.file} does not exist`)
      throw err
    }
  }
  const dir = join(home, 'iam')
  const path = join(dir, 'kek')
  try {
    return await readKekFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const key = randomBytes(32)
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, key.toString('base64'), { mode: 0o600, flag: 'wx' })
  await chmod(tmp, 0o600)
  try {
    // link, not rename: when two processes start at once, the first key wins and the other
    // process reads it instead of replacing it (secrets sealed under a lost key are unreadable).
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    await unlink(tmp)
    return loadKek(home)
  }
  await unlink(tmp)
  return key
}
