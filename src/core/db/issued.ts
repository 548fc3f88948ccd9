/**
 * The statements a transaction has issued and that have not settled yet. A caller need not await
 * a statement (see Transaction): the transaction waits for all of them before it commits.
 */
export class IssuedStatements {
  readonly #pending = new Set<Promise<unknown>>()

  track<P extends Promise<unknown>>(p: P): P {
    this.#pending.add(p)
    const settle = () => this.#pending.delete(p)
    p.then(settle, settle)
    return p
  }

  /** Every statement still outstanding (rejects with the first failure). */
  all(): Promise<unknown[]> {
    return Promise.all(this.#pending)
  }
}
