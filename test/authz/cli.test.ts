import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, test } from 'node:test'
import { Command } from 'commander'
import { registerAuthz, runAuthzEval } from '../../src/cli/commands/authz.ts'

function sink() {
  let text = ''
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += chunk
      cb()
    },
  })
  return { stream, text: () => text }
}

/** Directories made by files(), removed once every test here is done. */
const madeDirs: string[] = []
after(() => Promise.all(madeDirs.map((d) => rm(d, { recursive: true, force: true }))))

async function files(policies: string, entities: unknown, request: unknown) {
  const dir = await mkdtemp(join(tmpdir(), 'authz-cli-'))
  madeDirs.push(dir)
  const p = join(dir, 'p.cedar')
  const e = join(dir, 'e.json')
  const r = join(dir, 'r.json')
  await writeFile(p, policies)
  await writeFile(e, JSON.stringify(entities))
  await writeFile(r, JSON.stringify(request))
  return { policies: p, entities: e, request: r }
}

const entities = [
  {
    uid: { type: 'A::User', id: 'alice' },
    attrs: { level: 3 },
    parents: [{ type: 'A::Group', id: 'admins' }],
  },
  { uid: { type: 'A::Group', id: 'admins' }, attrs: {}, parents: [] },
]
const request = {
  principal: { type: 'A::User', id: 'alice' },
  action: { type: 'A::Action', id: 'read' },
  resource: { type: 'A::Doc', id: 'd' },
  context: {},
}

test('eval prints decision, determining policies and errors; exit 0 on allow', async () => {
  const f = await files(
    '@id("admins") permit (principal in A::Group::"admins", action, resource);\n@id("broken") forbid (principal, action, resource) when { resource.missing };',
    entities,
    request,
  )
  const out = sink()
  const code = await runAuthzEval({ ...f, json: true }, out.stream)
  assert.equal(code, 0)
  const result = JSON.parse(out.text())
  assert.equal(result.decision, 'allow')
  assert.deepEqual(result.determining, ['admins'])
  assert.deepEqual(
    result.errors.map((e: { policy: string }) => e.policy),
    ['broken'],
  )
})

test('exit 1 on deny, 2 on invalid policies with a position', async () => {
  const deny = await files(
    'permit (principal, action, resource) when { principal.level > 5 };',
    entities,
    request,
  )
  assert.equal(await runAuthzEval({ ...deny, json: true }, sink().stream), 1)
  const bad = await files('permit (principal, action, resource) when { 1 + };', entities, request)
  const out = sink()
  assert.equal(await runAuthzEval({ ...bad, json: true }, out.stream), 2)
  assert.match(JSON.parse(out.text()).error, /1:\d+/)
})

test('registerAuthz wires the command', () => {
  const program = new Command()
  registerAuthz(program)
  const authz = program.commands.find((c) => c.name() === 'authz')!
  assert.ok(authz.commands.some((c) => c.name() === 'eval'))
})
