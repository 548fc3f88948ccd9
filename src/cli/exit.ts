/** Exit codes of every `dflare` command (contract). */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

/** A failure whose one-line message is printed to stderr before exiting with `code`. */
export class CliError extends Error {
  override name = 'CliError'
  readonly code: number
  constructor(message: string, code: number = EXIT.failure) {
    super(message)
    this.code = code
  }
}

export function printJson(value: unknown) {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}
