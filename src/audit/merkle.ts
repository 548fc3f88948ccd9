import { createHash, hash } from 'node:crypto'

/**
 * RFC 6962 (Certificate Transparency) Merkle tree hashing, pure functions only.
 * Leaf hash = SHA-256(0x00 ‖ data); interior node = SHA-256(0x01 ‖ left ‖ right).
 */

export const EMPTY_ROOT = createHash('sha256').digest()

// One-shot crypto.hash is about three times faster than createHash for inputs this small,
// which is most of the cost of verifying a large log.
export function leafHash(data: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(data.length + 1)
  buf[0] = 0
  buf.set(data, 1)
  return hash('sha256', buf, 'buffer')
}

/** Leaf hash of a string's UTF-8 bytes, without an intermediate copy. */
export function leafHashOfText(text: string): Buffer {
  const buf = Buffer.allocUnsafe(Buffer.byteLength(text, 'utf8') + 1)
  buf[0] = 0
  buf.write(text, 1, 'utf8')
  return hash('sha256', buf, 'buffer')
}

const node = Buffer.alloc(65)
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== 32 || right.length !== 32) throw new RangeError('node hashes are 32 bytes')
  node[0] = 1
  node.set(left, 1)
  node.set(right, 33)
  return hash('sha256', node, 'buffer')
}

/** Largest power of two strictly smaller than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

/**
 * The right edge of a tree: the roots of its perfect subtrees, largest first, one per set bit of
 * `size`. Appending a leaf merges equal-sized subtrees (O(log n)), and folding the frontier from
 * the right gives the RFC 6962 root, so the log head never needs the whole tree.
 */
export class Frontier {
  size: number
  readonly hashes: Buffer[]

  constructor(size = 0, hashes: Buffer[] = []) {
    if (popcount(size) !== hashes.length) throw new Error('frontier does not match the tree size')
    this.size = size
    this.hashes = hashes
  }

  /**
   * Appends a leaf hash. `onNode(level, index, hash)` reports every perfect subtree completed by
   * the merge (level 0 = the leaf), so callers can persist interior nodes for proofs.
   */
  append(leaf: Buffer, onNode?: (level: number, index: number, hash: Buffer) => void): void {
    let h = leaf
    let n = this.size
    let level = 0
    let index = this.size
    onNode?.(0, index, h)
    while (n & 1) {
      h = nodeHash(this.hashes.pop()!, h)
      n = Math.floor(n / 2)
      level++
      index = Math.floor(index / 2)
      onNode?.(level, index, h)
    }
    this.hashes.push(h)
    this.size++
  }

  root(): Buffer {
    if (this.hashes.length === 0) return EMPTY_ROOT
    let r = this.hashes[this.hashes.length - 1]!
    for (let i = this.hashes.length - 2; i >= 0; i--) r = nodeHash(this.hashes[i]!, r)
    return r
  }

  clone(): Frontier {
    return new Frontier(this.size, [...this.hashes])
  }
}

function popcount(n: number): number {
  let c = 0
  while (n > 0) {
    c += n % 2
    n = Math.floor(n / 2)
  }
  return c
}

/** Root of a list of leaf hashes (reference implementation, O(n)). */
export function rootOf(leaves: readonly Buffer[]): Buffer {
  const f = new Frontier()
  for (const l of leaves) f.append(l)
  return f.root()
}

/**
 * Hash of any perfect, aligned subtree: `level` 0 is a leaf; subtree `index` at `level` covers
 * leaves [index·2^level, (index+1)·2^level).
 */
export type PerfectNode = (level: number, index: number) => Buffer

/** MTH(D[a:b]) per RFC 6962 §2.1, built from perfect aligned subtrees. */
export function rangeHash(node: PerfectNode, a: number, b: number): Buffer {
  const n = b - a
  if (n <= 0) throw new RangeError('empty range')
  const level = Math.log2(n)
  if (Number.isInteger(level) && a % n === 0) return node(level, a / n)
  const k = splitPoint(n)
  return nodeHash(rangeHash(node, a, a + k), rangeHash(node, a + k, b))
}

/** Perfect aligned subtrees whose hashes `rangeHash(a, b)` reads. */
export function rangeNodes(a: number, b: number, out: [number, number][] = []): [number, number][] {
  const n = b - a
  const level = Math.log2(n)
  if (Number.isInteger(level) && a % n === 0) out.push([level, a / n])
  else {
    const k = splitPoint(n)
    rangeNodes(a, a + k, out)
    rangeNodes(a + k, b, out)
  }
  return out
}

/** Audit path for leaf m in a tree of size n (RFC 6962 §2.1.1), as [a, b) ranges, leaf first. */
export function inclusionRanges(m: number, n: number): [number, number][] {
  if (m < 0 || m >= n) throw new RangeError('leaf index out of range')
  const out: [number, number][] = []
  const path = (m: number, a: number, b: number) => {
    if (b - a === 1) return
    const k = splitPoint(b - a)
    if (m < a + k) {
      path(m, a, a + k)
      out.push([a + k, b])
    } else {
      path(m, a + k, b)
      out.push([a, a + k])
    }
  }
  path(m, 0, n)
  return out
}

/** Consistency proof ranges between sizes m and n (RFC 6962 §2.1.2, SUBPROOF). */
export function consistencyRanges(m: number, n: number): [number, number][] {
  if (m < 1 || m > n) throw new RangeError('sizes out of range')
  const out: [number, number][] = []
  const sub = (m: number, a: number, b: number, complete: boolean) => {
    const size = b - a
    if (m === size) {
      if (!complete) out.push([a, b])
      return
    }
    const k = splitPoint(size)
    if (m <= k) {
      sub(m, a, a + k, complete)
      out.push([a + k, b])
    } else {
      sub(m - k, a + k, b, false)
      out.push([a, a + k])
    }
  }
  if (m < n) sub(m, 0, n, true)
  return out
}

/** Every perfect node a list of ranges needs, deduplicated. */
export function nodesFor(ranges: readonly [number, number][]): [number, number][] {
  const seen = new Map<string, [number, number]>()
  for (const [a, b] of ranges) for (const n of rangeNodes(a, b)) seen.set(`${n[0]}/${n[1]}`, n)
  return [...seen.values()]
}
