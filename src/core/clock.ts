/** Time source; tests substitute a fixed or stepping clock. */
export interface Clock {
  now(): Date
}

export const systemClock: Clock = { now: () => new Date() }

/** A clock tests can move by hand. */
export class ManualClock implements Clock {
  #t: number
  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.#t = typeof start === 'number' ? start : start.getTime()
  }
  now() {
    return new Date(this.#t)
  }
  advance(ms: number) {
    this.#t += ms
  }
  set(t: Date | number) {
    this.#t = typeof t === 'number' ? t : t.getTime()
  }
}
