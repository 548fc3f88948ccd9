import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

export type CryptoKey = webcrypto.CryptoKey
export type CryptoKeyPair = webcrypto.CryptoKeyPair

export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const
export const SIGN_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const

export function generateEcKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']) as Promise<CryptoKeyPair>
}

export async function privateKeyToDer(key: CryptoKey): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await privateKeyToDer(key), 'PRIVATE KEY')
}

export function privateKeyFromDer(der: Uint8Array): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', der, EC_P256, true, ['sign'])
}

export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  return privateKeyFromDer(new Uint8Array(x509.PemConverter.decodeFirst(pem)))
}

/** Whether `key` is the private half of the certificate's public key (sign, then verify). */
export async function keyMatchesCertificate(
  key: CryptoKey,
  cert: x509.X509Certificate,
): Promise<boolean> {
  const probe = new TextEncoder().encode('dflare key match probe')
  const sig = await webcrypto.subtle.sign(SIGN_SHA256, key, probe)
  const pub = await cert.publicKey.export(EC_P256, ['verify'])
  return webcrypto.subtle.verify(SIGN_SHA256, pub, sig, probe)
}

export { x509 }
