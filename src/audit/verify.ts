import { Frontier, leafHashOfText } from './merkle.ts'
import { openCheckpoint, type VerifierKey } from './note.ts'

/** One stored leaf as any source (database, export file, backup segment) presents it. */
export interface LogEntry {
  index: number
  /** The canonical JSON bytes hashed into the leaf. */
  body: string
  /** Stored leaf hash and tree root after this leaf, when the source keeps them. */
  leafHash?: Buffer
  root?: Buffer
}

export interface LogSource {
  log: string
  /** Entries in index order. */
  entries: AsyncIterable<LogEntry>
  /** Signed checkpoint notes (any order). */
  checkpoints: readonly string[]
  /** The stored log head, when the source has one. */
  head?: { size: number; root: Buffer }
}

export type LogReport =
  | { log: string; ok: true; size: number; root: string; checkpoints: number }
  | {
      log: string
      ok: false
      /** First index whose stored state is inconsistent with the history verified before it. */
      firstBadIndex: number
      reason: string
    }

/** Stored roots are compared every this many leaves; a mismatch is then narrowed leaf by leaf. */
const WINDOW = 1024

/**
 * Recomputes a log's Merkle tree from its entries and checks every stored hash, the head and the
 * signed checkpoints against it. Edits, deletions, insertions and reorderings all change the
 * recomputed tree; the report names the first index at which the stored log stops matching.
 * Rewrites that also forge every derived hash are caught by the signed checkpoints, and are then
 * named from the last checkpoint that still matched.
 */
export async function verifyLog(
  source: LogSource,
  keys: readonly VerifierKey[],
  options: { origin?: string; requireSignedEnd?: boolean } = {},
): Promise<LogReport> {
  const { origin } = options
  const { log } = source
  const fail = (firstBadIndex: number, reason: string): LogReport => ({
    log,
    ok: false,
    firstBadIndex,
    reason,
  })

  const checkpoints: { size: number; root: Buffer }[] = []
  for (const note of source.checkpoints) {
    let cp: ReturnType<typeof openCheckpoint>
    try {
      cp = openCheckpoint(note, keys)
    } catch (err) {
      return fail(0, `a stored checkpoint does not verify: ${(err as Error).message}`)
    }
    const expectedOrigin = origin ?? cp.origin
    if (cp.origin !== expectedOrigin || !cp.origin.endsWith(`/${log}`))
      return fail(0, `a checkpoint names origin ${cp.origin}, not this log`)
    checkpoints.push(cp)
  }
  checkpoints.sort((a, b) => a.size - b.size)

  const frontier = new Frontier()
  let windowStart = frontier.clone()
  let window: { index: number; leaf: Buffer; root: Buffer }[] = []
  let next = 0 // next checkpoint to check
  let verifiedUpTo = 0 // size of the last checkpoint that matched

  /** Compares stored roots in the window; returns the first index whose root is wrong. */
  const checkWindow = (): number | undefined => {
    const last = window[window.length - 1]
    if (last && !last.root.equals(frontier.root())) {
      const f = windowStart.clone()
      for (const w of window) {
        f.append(w.leaf)
        if (!f.root().equals(w.root)) return w.index
      }
    }
    window = []
    windowStart = frontier.clone()
    return undefined
  }
  const checkCheckpoints = (): LogReport | undefined => {
    while (next < checkpoints.length && checkpoints[next]!.size === frontier.size) {
      const cp = checkpoints[next++]!
      if (!cp.root.equals(frontier.root()))
        return fail(
          verifiedUpTo,
          `the events before index ${cp.size} do not match the signed checkpoint at size ${cp.size}`,
        )
      verifiedUpTo = cp.size
    }
    return undefined
  }

  const emptyCheck = checkCheckpoints()
  if (emptyCheck) return emptyCheck
  for await (const e of source.entries) {
    if (e.index !== frontier.size) {
      if (e.index > frontier.size) return fail(frontier.size, `event ${frontier.size} is missing`)
      return fail(e.index, `event ${e.index} is duplicated or out of order`)
    }
    const leaf = leafHashOfText(e.body)
    if (e.leafHash && !leaf.equals(e.leafHash))
      return fail(e.index, `event ${e.index} does not match its leaf hash`)
    frontier.append(leaf)
    if (e.root) window.push({ index: e.index, leaf, root: e.root })
    const due = next < checkpoints.length && checkpoints[next]!.size === frontier.size
    if (due || frontier.size % WINDOW === 0) {
      const bad = checkWindow()
      if (bad !== undefined) return fail(bad, `the tree root stored with event ${bad} is wrong`)
      const cpFail = checkCheckpoints()
      if (cpFail) return cpFail
    }
  }
  const bad = checkWindow()
  if (bad !== undefined) return fail(bad, `the tree root stored with event ${bad} is wrong`)

  const size = frontier.size
  if (next < checkpoints.length)
    return fail(
      size,
      `events from ${size} are missing: a checkpoint covers ${checkpoints.at(-1)!.size}`,
    )
  if (options.requireSignedEnd && verifiedUpTo !== size)
    return fail(verifiedUpTo, `no signed checkpoint covers the events from ${verifiedUpTo}`)
  if (source.head) {
    if (source.head.size > size)
      return fail(size, `events from ${size} are missing: the log head says ${source.head.size}`)
    if (source.head.size < size)
      return fail(source.head.size, `event ${source.head.size} is beyond the log head`)
    if (!source.head.root.equals(frontier.root()))
      return fail(verifiedUpTo, 'the log head root does not match the events')
  }
  return {
    log,
    ok: true,
    size,
    root: frontier.root().toString('base64'),
    checkpoints: checkpoints.length,
  }
}
