import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  checkpointText,
  openCheckpoint,
  openNote,
  parseVerifierKey,
  rawPublicKey,
  signNote,
  verifierKey,
} from '../../src/audit/note.ts'

// The example of golang.org/x/mod/sumdb/note (the reference implementation of C2SP signed-note).
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'
const PETER_NOTE =
  'If you think cryptography is the answer to your problem,\n' +
  "then you don't know what your problem is.\n" +
  '\n' +
  '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n'

function signer(name: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const vk = verifierKey(name, rawPublicKey(publicKey))
  return { signer: { name, id: vk.id, privateKey }, vk }
}

describe('C2SP signed notes', () => {
  it('verifies the reference implementation example (key id and signature)', () => {
    const key = parseVerifierKey(PETER_VKEY)
    assert.equal(key.id.toString('hex'), 'c74f20a3')
    const opened = openNote(PETER_NOTE, [key])
    assert.match(opened.text, /^If you think/)
    assert.throws(() => openNote(PETER_NOTE.replace('cryptography', 'cryptograph'), [key]))
  })

  it('signs checkpoints that open with the right key only', () => {
    const a = signer('audit.test/log')
    const b = signer('audit.test/log')
    const root = Buffer.alloc(32, 7)
    const note = signNote(checkpointText({ origin: 'audit.test/log/acme', size: 42, root }), [
      a.signer,
    ])
    assert.match(note, /^audit\.test\/log\/acme\n42\nBwcH/)
    const cp = openCheckpoint(note, [b.vk, a.vk])
    assert.equal(cp.size, 42)
    assert.ok(cp.root.equals(root))
    assert.deepEqual(cp.verifiedBy, [a.vk])
    assert.throws(() => openCheckpoint(note, [b.vk]), /not signed by a known key/)
    assert.throws(() => openCheckpoint(note.replace('\n42\n', '\n43\n'), [a.vk]))
    // The vkey round-trips through its text form.
    assert.equal(parseVerifierKey(a.vk.vkey).id.toString('hex'), a.vk.id.toString('hex'))
  })

  it('rejects a key whose id does not match', () => {
    const wrong = PETER_VKEY.replace('c74f20a3', 'c74f20a4')
    assert.throws(() => parseVerifierKey(wrong), /does not match/)
  })
})
