import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Queryable } from '../core/db/index.ts'
import {
  parseVerifierKey,
  rawPublicKey,
  type Signer,
  type VerifierKey,
  verifierKey,
} from './note.ts'

/**
 * Checkpoint signing keys. Private keys live only in files under the key directory (0600);
 * public keys are published in audit.keys (append-only), so old checkpoints keep verifying after
 * a rotation. The current key is the newest one whose private half this process holds.
 */
export class KeyRing {
  readonly #db: Queryable
  readonly #dir: string
  readonly #name: string
  #current: Promise<Signer & { vkey: string }> | undefined

  constructor(db: Queryable, dir: string, name: string) {
    this.#db = db
    this.#dir = join(dir, 'signing')
    this.#name = name
  }

  /** Every published verifier key (current and retired). */
  async verifierKeys(): Promise<VerifierKey[]> {
    const { rows } = await this.#db.query<{ vkey: string }>(
      'SELECT vkey FROM audit.keys ORDER BY created_at, key_id',
    )
    return rows.map((r) => parseVerifierKey(r.vkey))
  }

  /** The current signer (created on first use; concurrent first calls share one key). */
  current(): Promise<Signer & { vkey: string }> {
    this.#current ??= this.#load().catch((err) => {
      this.#current = undefined
      throw err
    })
    return this.#current
  }

  /**
   * Verifier keys of the private keys held in the key directory: a trust anchor the database
   * cannot forge (an owner could insert a key of their own into audit.keys).
   */
  async localVerifierKeys(): Promise<VerifierKey[]> {
    const files = await readdir(this.#dir).catch(() => [] as string[])
    const keys: VerifierKey[] = []
    for (const f of files.filter((f) => /^[0-9a-f]{8}\.pem$/.test(f)).sort()) {
      const privateKey = createPrivateKey(await readFile(join(this.#dir, f), 'utf8'))
      keys.push(verifierKey(this.#name, rawPublicKey(createPublicKey(privateKey))))
    }
    return keys
  }

  async #load(): Promise<Signer & { vkey: string }> {
    const { rows } = await this.#db.query<{ key_id: string; name: string; vkey: string }>(
      'SELECT key_id, name, vkey FROM audit.keys WHERE name = $1 ORDER BY created_at DESC, key_id',
      [this.#name],
    )
    for (const row of rows) {
      const pem = await readFile(this.#file(row.key_id), 'utf8').catch(() => undefined)
      if (!pem) continue
      const privateKey = createPrivateKey(pem)
      const vk = verifierKey(this.#name, rawPublicKey(createPublicKey(privateKey)))
      if (vk.vkey !== row.vkey) throw new Error(`audit signing key ${row.key_id} does not match`)
      return { name: this.#name, id: vk.id, privateKey, vkey: vk.vkey }
    }
    return this.#create()
  }

  /** Creates a new signing key and makes it current; older keys remain published. */
  async rotate(): Promise<Signer & { vkey: string }> {
    const key = await this.#create()
    this.#current = Promise.resolve(key)
    return key
  }

  async #create(): Promise<Signer & { vkey: string }> {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const vk = verifierKey(this.#name, rawPublicKey(publicKey))
    const hexId = vk.id.toString('hex')
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
    await writeFile(
      this.#file(hexId),
      privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      { mode: 0o600, flag: 'wx' },
    )
    await this.#db.query(
      'INSERT INTO audit.keys (key_id, name, vkey, created_at) VALUES ($1, $2, $3, clock_timestamp())',
      [hexId, this.#name, vk.vkey],
    )
    return { name: this.#name, id: vk.id, privateKey, vkey: vk.vkey }
  }

  #file(hexId: string) {
    if (!/^[0-9a-f]{8}$/.test(hexId)) throw new Error('malformed key id')
    return join(this.#dir, `${hexId}.pem`)
  }
}
