import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import fc from 'fast-check'
import { CENSOR, createLogger, redactSecrets, SECRET_KEYS } from '../../src/core/log.ts'

/** A logger writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = []
  const raw: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      raw.push(String(chunk))
      lines.push(JSON.parse(String(chunk)))
      done()
    },
  })
  return { log: createLogger({ level: 'debug' }, stream), lines, raw }
}

const SECRET = 'hunter2-very-secret-value'
const secretKey = fc
  .constantFrom(...SECRET_KEYS)
  .chain((k) => fc.constantFrom(k, k.toUpperCase(), k[0]!.toUpperCase() + k.slice(1)))
const plainKey = fc
  .string({ minLength: 1, maxLength: 8 })
  .filter(
    (k) => !SECRET_KEYS.has(k.toLowerCase()) && k.toLowerCase() !== 'code' && k !== '__proto__',
  )

/** Plain JSON values with the secret planted under secret keys at any depth up to 6. */
const tree: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
    fc.array(tie('node'), { maxLength: 3 }),
    fc
      .dictionary(fc.oneof(plainKey, secretKey), tie('node'), { maxKeys: 4, noNullPrototype: true })
      .map((o) => {
        for (const k of Object.keys(o)) if (SECRET_KEYS.has(k.toLowerCase())) o[k] = SECRET
        return o
      }),
  ),
})).node

test('no secret key reaches a log line, at any depth, and the logged object is left as it was', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.oneof(plainKey, secretKey), tree, { maxKeys: 4, noNullPrototype: true }),
      (obj) => {
        const before = structuredClone(obj)
        const { log, raw } = capture()
        log.info({ ctx: obj, ...obj }, 'line')
        assert.ok(!raw.join('').includes(SECRET))
        assert.deepEqual(obj, before)
      },
    ),
    { numRuns: 300 },
  )
})

test('redaction keeps everything else: only secret values change', () => {
  fc.assert(
    fc.property(tree, (value) => {
      const out = redactSecrets(value) as unknown
      const strip = (v: unknown): unknown =>
        Array.isArray(v)
          ? v.map(strip)
          : v && typeof v === 'object'
            ? Object.fromEntries(
                Object.entries(v).map(([k, x]) => [
                  k,
                  SECRET_KEYS.has(k.toLowerCase()) ? CENSOR : strip(x),
                ]),
              )
            : v
      assert.deepEqual(out, strip(value))
    }),
    { numRuns: 300 },
  )
})

test('a line without secrets is passed through without a copy', () => {
  const obj = { method: 'GET', path: '/api/v1/tenants', nested: { status: 200, list: [1, 2] } }
  assert.equal(redactSecrets(obj), obj)
})

test('`code` is a secret at the top of a line only (an authorization code, not an error code)', () => {
  const { log, lines } = capture()
  log.info({ code: 'auth-code-123', err: { code: 'ECONNREFUSED' }, nested: { code: 'x' } })
  assert.equal(lines[0]!.code, CENSOR)
  assert.deepEqual(lines[0]!.nested, { code: 'x' })
})

test('errors keep type and message, lose bound parameters, and their secret fields are redacted', () => {
  const { log, lines, raw } = capture()
  const err = Object.assign(new Error('connection failed'), {
    code: '28P01',
    params: ['hunter2'],
    detail: 'Key (email)=(a@b.c) already exists',
    config: { databaseUrl: `postgres://u:${SECRET}@h/db`, password: SECRET },
  })
  log.error({ err }, 'failed')
  const line = lines[0]! as { err: Record<string, unknown> }
  assert.equal(line.err.message, 'connection failed')
  assert.equal(line.err.code, '28P01')
  assert.equal(line.err.params, undefined)
  assert.equal(line.err.detail, undefined)
  assert.deepEqual(line.err.config, { databaseUrl: CENSOR, password: CENSOR })
  assert.ok(!raw.join('').includes(SECRET) && !raw.join('').includes('a@b.c'))
})

test('child bindings and request headers are redacted by exact paths', () => {
  const { log, raw, lines } = capture()
  log.child({ token: SECRET, component: 'x' }).info('bound')
  log.info({ req: { headers: { authorization: `Bearer ${SECRET}`, cookie: SECRET } } }, 'req')
  assert.ok(!raw.join('').includes(SECRET))
  assert.equal(lines[0]!.component, 'x')
})

test('values nested deeper than the search are dropped, never logged unsearched', () => {
  let deep: Record<string, unknown> = { password: SECRET }
  for (let i = 0; i < 20; i++) deep = { next: deep }
  const { log, raw } = capture()
  log.info({ deep }, 'deep')
  assert.ok(!raw.join('').includes(SECRET))
  assert.ok(raw.join('').includes('[TRUNCATED]'))
})

test('an error logged under any key has its secret fields redacted', () => {
  const { log, lines, raw } = capture()
  const inner = Object.assign(new Error('inner'), { token: SECRET, status: 401 })
  log.warn({ attempt: { cause: inner }, err: new Error('plain') }, 'nested')
  assert.ok(!raw.join('').includes(SECRET))
  assert.deepEqual((lines[0]!.attempt as { cause: unknown }).cause, { token: CENSOR, status: 401 })
  assert.equal((lines[0]!.err as { message: string }).message, 'plain')
})
