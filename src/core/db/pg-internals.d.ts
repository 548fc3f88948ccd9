// node-postgres's own parameter encoder, which its package exports (`pg/lib/*`) but its type
// declarations leave out; pglite-wire.ts encodes PGlite's parameters with it, as `pg` does.
declare module 'pg/lib/utils.js' {
  /** A JS value as a parameter: text, a Buffer (sent as binary), or null. */
  export function prepareValue(value: unknown): string | Buffer | null
  const utils: { prepareValue: typeof prepareValue }
  export default utils
}
