/** Bounded memory of one-time ids (DPoP proof `jti`s) until they expire. */
export class ReplayCache {
  readonly #seen = new Map<string, number>()
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  /** Remembers `id` until `expiresAt` (epoch seconds); false if it was already seen. */
  add(id: string, expiresAt: number, now = Math.floor(Date.now() / 1000)): boolean {
    const until = this.#seen.get(id)
    if (until !== undefined && until >= now) return false
    if (this.#seen.size >= this.#max) {
      for (const [k, v] of this.#seen) if (v < now) this.#seen.delete(k)
      // Still full of live ids: refuse rather than forget one (fail closed).
      if (this.#seen.size >= this.#max) return false
    }
    this.#seen.set(id, expiresAt)
    return true
  }
}
