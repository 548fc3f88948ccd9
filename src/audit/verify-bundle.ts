import { BundleError, type BundleLine, parseLine, toEntry } from './bundle.ts'
import { parseVerifierKey, type VerifierKey } from './note.ts'
import { type LogEntry, type LogReport, verifyLog } from './verify.ts'

export interface BundleReport {
  logs: LogReport[]
  /** Whether the keys came from the caller (pinned) or only from the bundle itself. */
  trust: 'pinned' | 'embedded'
}

/** Verifies an export (NDJSON lines): each log section must recompute to its signed checkpoints. */
export async function verifyBundle(
  lines: AsyncIterable<string>,
  pinned?: readonly VerifierKey[],
): Promise<BundleReport> {
  const it = lines[Symbol.asyncIterator]()
  let lineNo = 0
  let peeked: BundleLine | undefined
  let done = false
  const peek = async (): Promise<BundleLine | undefined> => {
    while (!peeked && !done) {
      const r = await it.next()
      if (r.done) done = true
      else {
        lineNo++
        if (r.value.trim()) peeked = parseLine(r.value, lineNo)
      }
    }
    return peeked
  }
  const take = async () => {
    const line = await peek()
    peeked = undefined
    return line
  }

  if ((await take())?.kind !== 'dflare-audit') throw new BundleError('not a dflare audit export')
  const embedded: VerifierKey[] = []
  while ((await peek())?.kind === 'key') {
    const line = (await take()) as Extract<BundleLine, { kind: 'key' }>
    embedded.push(parseVerifierKey(line.vkey))
  }
  const keys = pinned && pinned.length > 0 ? pinned : embedded

  const logs: LogReport[] = []
  const seen = new Set<string>()
  for (let first = await peek(); first; first = await peek()) {
    if (first.kind !== 'checkpoint' && first.kind !== 'event')
      throw new BundleError(`line ${lineNo}: unexpected ${first.kind} record`)
    const log = first.log
    if (seen.has(log)) throw new BundleError(`line ${lineNo}: log ${log} appears twice`)
    seen.add(log)
    const checkpoints: string[] = []
    for (let l = await peek(); l?.kind === 'checkpoint' && l.log === log; l = await peek()) {
      checkpoints.push(l.note)
      await take()
    }
    async function* entries(): AsyncGenerator<LogEntry> {
      for (let l = await peek(); l?.kind === 'event' && l.log === log; l = await peek()) {
        await take()
        yield toEntry(l)
      }
    }
    logs.push(
      await verifyLog({ log, entries: entries(), checkpoints }, keys, { requireSignedEnd: true }),
    )
    // Skip what an early failure left unread of this log.
    for (let l = await peek(); l?.kind === 'event' && l.log === log; l = await peek()) await take()
  }
  return { logs, trust: pinned && pinned.length > 0 ? 'pinned' : 'embedded' }
}
