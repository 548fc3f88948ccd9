import { createHash } from 'node:crypto'

/**
 * An independent RFC 6962 / RFC 9162 verifier for tests: written from the RFC text (§2.1.3.2
 * and §2.1.4.2 of RFC 9162), sharing no code with src/audit.
 */
const sha = (...parts: Uint8Array[]) => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}
export const leaf = (data: Uint8Array) => sha(Buffer.from([0]), data)
const node = (l: Uint8Array, r: Uint8Array) => sha(Buffer.from([1]), l, r)

/** MTH per RFC 6962 §2.1, recursively. */
export function mth(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return sha()
  if (leaves.length === 1) return leaves[0]!
  let k = 1
  while (k * 2 < leaves.length) k *= 2
  return node(mth(leaves.slice(0, k)), mth(leaves.slice(k)))
}

export function verifyInclusion(
  index: number,
  size: number,
  leafHash: Buffer,
  path: readonly Buffer[],
  root: Buffer,
): boolean {
  if (index >= size) return false
  let fn = index
  let sn = size - 1
  let r = leafHash
  for (const p of path) {
    if (sn === 0) return false
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
      }
    } else {
      r = node(r, p)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  return sn === 0 && r.equals(root)
}

export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Buffer,
  root2: Buffer,
  proof: readonly Buffer[],
): boolean {
  if (size1 > size2) return false
  if (size1 === size2) return proof.length === 0 && root1.equals(root2)
  if (size1 === 0) return proof.length === 0
  let path = [...proof]
  if (path.length === 0) return false
  // If size1 is an exact power of two, prepend root1.
  if ((size1 & (size1 - 1)) === 0) path = [root1, ...path]
  let fn = size1 - 1
  let sn = size2 - 1
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  let fr = path[0]!
  let sr = path[0]!
  for (const c of path.slice(1)) {
    if (sn === 0) return false
    if (fn % 2 === 1 || fn === sn) {
      fr = node(c, fr)
      sr = node(c, sr)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
      }
    } else {
      sr = node(sr, c)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  return fr.equals(root1) && sr.equals(root2) && sn === 0
}
