/**
 * The statements a transaction has issued. A caller need not await a statement (see Transaction):
 * the transaction waits for all of them before it commits, and fails if any failed, even one that
 * settled long before (PGlite runs a statement when it is issued) or that failed before reaching
 * the database (a parameter that cannot be encoded).
 */
export class IssuedStatements {
  readonly #pending = new Set<Promise<unknown>>()
  #failure: { error: unknown } | undefined

  track<P extends Promise<unknown>>(p: P): P {
    this.#pending.add(p)
    p.then(
      () => this.#pending.delete(p),
      (error: unknown) => {
        this.#pending.delete(p)
        this.#failure ??= { error }
      },
    )
    return p
  }

  /** Throws the first failure of a statement settled so far. */
  throwIfFailed() {
    if (this.#failure) throw this.#failure.error
  }

  /** Waits for every statement still outstanding; rejects with the first failure of any. */
  async all(): Promise<void> {
    await Promise.allSettled(this.#pending)
    if (this.#failure) throw this.#failure.error
  }
}
