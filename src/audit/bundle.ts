import type { LogEntry } from './verify.ts'

/**
 * The self-contained NDJSON format of exports and backup segments: a header, the verifier keys,
 * then per log its signed checkpoints followed by its events in index order. Everything needed
 * to verify is inside; trust comes from the verifier keys the checker pins (`--key`).
 */
export const BUNDLE_HEADER = { kind: 'dflare-audit', version: 1 } as const

export type BundleLine =
  | typeof BUNDLE_HEADER
  | { kind: 'key'; vkey: string }
  | { kind: 'checkpoint'; log: string; note: string }
  | { kind: 'event'; log: string; index: number; body: string; leafHash: string; root: string }

export function eventLine(log: string, e: LogEntry): string {
  return JSON.stringify({
    kind: 'event',
    log,
    index: e.index,
    body: e.body,
    leafHash: e.leafHash?.toString('base64'),
    root: e.root?.toString('base64'),
  })
}

export class BundleError extends Error {
  override name = 'BundleError'
}

export function parseLine(line: string, lineNo: number): BundleLine {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch {
    throw new BundleError(`line ${lineNo}: not JSON`)
  }
  const o = v as Record<string, unknown>
  const str = (k: string) => {
    if (typeof o[k] !== 'string') throw new BundleError(`line ${lineNo}: ${k} is missing`)
    return o[k] as string
  }
  switch (o?.kind) {
    case 'dflare-audit':
      if (o.version !== 1) throw new BundleError(`line ${lineNo}: unsupported version`)
      return BUNDLE_HEADER
    case 'key':
      return { kind: 'key', vkey: str('vkey') }
    case 'checkpoint':
      return { kind: 'checkpoint', log: str('log'), note: str('note') }
    case 'event':
      if (!Number.isSafeInteger(o.index) || (o.index as number) < 0)
        throw new BundleError(`line ${lineNo}: index is invalid`)
      return {
        kind: 'event',
        log: str('log'),
        index: o.index as number,
        body: str('body'),
        leafHash: typeof o.leafHash === 'string' ? o.leafHash : '',
        root: typeof o.root === 'string' ? o.root : '',
      }
    default:
      throw new BundleError(`line ${lineNo}: unknown record kind`)
  }
}

export function toEntry(line: Extract<BundleLine, { kind: 'event' }>): LogEntry {
  return {
    index: line.index,
    body: line.body,
    ...(line.leafHash ? { leafHash: Buffer.from(line.leafHash, 'base64') } : {}),
    ...(line.root ? { root: Buffer.from(line.root, 'base64') } : {}),
  }
}
