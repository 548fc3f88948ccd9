import type { Db } from '../core/db/index.ts'
import type { KeyRing } from './keys.ts'
import { checkpointText, signNote } from './note.ts'

export interface IssuedCheckpoint {
  log: string
  size: number
  root: string
  keyId: string
  note: string
}

/** Issues C2SP checkpoints for logs, signed with the key ring's current key. */
export class CheckpointService {
  readonly #db: Db
  readonly #keys: KeyRing
  readonly #origin: string
  readonly #drain: () => Promise<void>

  /** `drain` integrates queued events first, so a checkpoint covers everything recorded before it. */
  constructor(db: Db, keys: KeyRing, origin: string, drain: () => Promise<void> = async () => {}) {
    this.#db = db
    this.#keys = keys
    this.#origin = origin
    this.#drain = drain
  }

  originOf(log: string) {
    return `${this.#origin}/${log}`
  }

  /**
   * Signs the current head of `log` (reusing the latest checkpoint when the log has not grown
   * and the key has not changed). The head is read under a share lock so the signed size and
   * root are a committed state.
   */
  async issue(log: string): Promise<IssuedCheckpoint> {
    await this.#drain()
    return this.#issue(log)
  }

  async #issue(log: string): Promise<IssuedCheckpoint> {
    const signer = await this.#keys.current()
    const keyId = signer.id.toString('hex')
    return this.#db.transaction(async (tx) => {
      const head = await tx.query<{ size: number; root: Buffer }>(
        'SELECT size, root FROM audit.heads WHERE log = $1 FOR SHARE',
        [log],
      )
      const { size, root } = head.rows[0] ?? {
        size: 0,
        root: Buffer.from(
          'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
          'hex',
        ),
      }
      const latest = await tx.query<{ size: number; note: string; key_id: string }>(
        'SELECT size, note, key_id FROM audit.checkpoints WHERE log = $1 ORDER BY size DESC, id DESC LIMIT 1',
        [log],
      )
      const prev = latest.rows[0]
      if (prev && prev.size === size && prev.key_id === keyId)
        return { log, size, root: root.toString('base64'), keyId, note: prev.note }
      const note = signNote(checkpointText({ origin: this.originOf(log), size, root }), [signer])
      await tx.query(
        'INSERT INTO audit.checkpoints (log, size, root, key_id, note) VALUES ($1, $2, $3, $4, $5)',
        [log, size, root, keyId, note],
      )
      return { log, size, root: root.toString('base64'), keyId, note }
    })
  }

  /**
   * Signs the tree of `log` at an earlier `size` (a backup segment boundary), from the root the
   * writer stored with leaf size-1; reuses an existing checkpoint at that size.
   */
  async issueAt(log: string, size: number): Promise<IssuedCheckpoint> {
    const signer = await this.#keys.current()
    const keyId = signer.id.toString('hex')
    const existing = await this.#db.query<{ root: Buffer; note: string }>(
      'SELECT root, note FROM audit.checkpoints WHERE log = $1 AND size = $2 AND key_id = $3 LIMIT 1',
      [log, size, keyId],
    )
    if (existing.rows[0])
      return {
        log,
        size,
        root: existing.rows[0].root.toString('base64'),
        keyId,
        note: existing.rows[0].note,
      }
    const { rows } = await this.#db.query<{ root: Buffer }>(
      'SELECT root FROM audit.events WHERE log = $1 AND idx = $2',
      [log, size - 1],
    )
    if (!rows[0]) throw new Error(`audit log ${log} has no event ${size - 1}`)
    const root = rows[0].root
    const note = signNote(checkpointText({ origin: this.originOf(log), size, root }), [signer])
    await this.#db.query(
      'INSERT INTO audit.checkpoints (log, size, root, key_id, note) VALUES ($1, $2, $3, $4, $5)',
      [log, size, root, keyId, note],
    )
    return { log, size, root: root.toString('base64'), keyId, note }
  }

  /** Latest stored checkpoint of a log. */
  async latest(log: string): Promise<IssuedCheckpoint | undefined> {
    const { rows } = await this.#db.query<{
      size: number
      root: Buffer
      key_id: string
      note: string
    }>(
      'SELECT size, root, key_id, note FROM audit.checkpoints WHERE log = $1 ORDER BY size DESC, id DESC LIMIT 1',
      [log],
    )
    const r = rows[0]
    return (
      r && { log, size: r.size, root: r.root.toString('base64'), keyId: r.key_id, note: r.note }
    )
  }

  /** Checkpoints every log that grew since its latest checkpoint (the scheduled run). */
  async issueForGrownLogs(): Promise<IssuedCheckpoint[]> {
    await this.#drain()
    const { rows } = await this.#db.query<{ log: string }>(
      `SELECT h.log FROM audit.heads h
       WHERE h.size > COALESCE((SELECT max(c.size) FROM audit.checkpoints c WHERE c.log = h.log), -1)
       ORDER BY h.log`,
    )
    const out: IssuedCheckpoint[] = []
    for (const r of rows) out.push(await this.#issue(r.log))
    return out
  }
}
