/**
 * Cedar's `ipaddr` and `decimal` extension types, matching the reference implementation's
 * parsing rules (checked by the differential test against cedar-wasm).
 */
import { CedarError } from './errors.ts'

const V4_BITS = 32
const V6_BITS = 128
const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/
const PREFIX = /^(0|[1-9][0-9]*)$/

function ipError(s: string): CedarError {
  return new CedarError(
    `error while evaluating \`ipaddr\` extension function: invalid IP address: ${s}`,
  )
}

function parseV4(s: string): bigint | undefined {
  const parts = s.split('.')
  if (parts.length !== 4) return undefined
  let n = 0n
  for (const p of parts) {
    if (!V4_OCTET.test(p)) return undefined
    const v = Number(p)
    if (v > 255) return undefined
    n = (n << 8n) | BigInt(v)
  }
  return n
}

function groups(s: string): bigint[] | undefined {
  if (s === '') return []
  const out: bigint[] = []
  for (const g of s.split(':')) {
    if (!V6_GROUP.test(g)) return undefined
    out.push(BigInt(`0x${g}`))
  }
  return out
}

function parseV6(s: string): bigint | undefined {
  const gap = s.indexOf('::')
  let all: bigint[]
  if (gap < 0) {
    const g = groups(s)
    if (g?.length !== 8) return undefined
    all = g
  } else {
    if (s.indexOf('::', gap + 1) >= 0) return undefined
    const head = groups(s.slice(0, gap))
    const tail = groups(s.slice(gap + 2))
    if (!head || !tail || head.length + tail.length > 7) return undefined
    all = [...head, ...Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail]
  }
  return all.reduce((n, g) => (n << 16n) | g, 0n)
}

export class IpAddr {
  readonly v6: boolean
  readonly addr: bigint
  readonly prefix: number
  readonly start: bigint
  readonly end: bigint

  constructor(v6: boolean, addr: bigint, prefix: number) {
    this.v6 = v6
    this.addr = addr
    this.prefix = prefix
    const bits = BigInt(v6 ? V6_BITS : V4_BITS)
    const hostBits = bits - BigInt(prefix)
    const hostMask = (1n << hostBits) - 1n
    this.start = addr & ~hostMask
    this.end = this.start | hostMask
  }

  static parse(s: string): IpAddr {
    if (s.includes(':') && s.includes('.'))
      throw new CedarError(
        `error while evaluating \`ipaddr\` extension function: error parsing IP address from string: We do not accept IPv4 embedded in IPv6 (e.g., ::ffff:127.0.0.1). Found: \`${s}\``,
      )
    const slash = s.indexOf('/')
    const addrText = slash < 0 ? s : s.slice(0, slash)
    const v6 = addrText.includes(':')
    const addr = v6 ? parseV6(addrText) : parseV4(addrText)
    if (addr === undefined) throw ipError(addrText)
    const max = v6 ? V6_BITS : V4_BITS
    let prefix = max
    if (slash >= 0) {
      const p = s.slice(slash + 1)
      const maxLen = v6 ? 3 : 2
      if (p.length > maxLen || !PREFIX.test(p) || Number(p) > max)
        throw new CedarError(
          `error while evaluating \`ipaddr\` extension function: error parsing prefix: ${p}`,
        )
      prefix = Number(p)
    }
    return new IpAddr(v6, addr, prefix)
  }

  equals(o: IpAddr) {
    return this.v6 === o.v6 && this.addr === o.addr && this.prefix === o.prefix
  }

  isInRange(o: IpAddr) {
    return this.v6 === o.v6 && o.start <= this.start && this.end <= o.end
  }

  isLoopback() {
    return this.isInRange(this.v6 ? V6_LOOPBACK : V4_LOOPBACK)
  }

  isMulticast() {
    return this.isInRange(this.v6 ? V6_MULTICAST : V4_MULTICAST)
  }

  toString() {
    let text: string
    if (this.v6) {
      const g: string[] = []
      for (let i = 7; i >= 0; i--) g.push(((this.addr >> BigInt(i * 16)) & 0xffffn).toString(16))
      text = g.join(':')
    } else {
      const o: string[] = []
      for (let i = 3; i >= 0; i--) o.push(((this.addr >> BigInt(i * 8)) & 0xffn).toString())
      text = o.join('.')
    }
    return `${text}/${this.prefix}`
  }
}

const V4_LOOPBACK = IpAddr.parse('127.0.0.0/8')
const V6_LOOPBACK = IpAddr.parse('::1/128')
const V4_MULTICAST = IpAddr.parse('224.0.0.0/4')
const V6_MULTICAST = IpAddr.parse('ff00::/8')

const DECIMAL = /^(-?)([0-9]+)\.([0-9]+)$/
const DIGITS = 4
const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

/** Fixed-point decimal with four fractional digits, stored as a scaled i64. */
export class Decimal {
  readonly value: bigint
  constructor(value: bigint) {
    this.value = value
  }

  static parse(s: string): Decimal {
    const m = DECIMAL.exec(s)
    const fail = (why: string) =>
      new CedarError(`error while evaluating \`decimal\` extension function: ${why}`)
    if (!m) throw fail(`\`${s}\` is not a well-formed decimal value`)
    const frac = m[3]!
    if (frac.length > DIGITS) throw fail(`too many digits after the decimal in \`${s}\``)
    const magnitude = BigInt(m[2]!) * 10n ** BigInt(DIGITS) + BigInt(frac.padEnd(DIGITS, '0'))
    const value = m[1] === '-' ? -magnitude : magnitude
    if (value < I64_MIN || value > I64_MAX) throw fail('overflow when converting to decimal')
    return new Decimal(value)
  }

  toString() {
    const neg = this.value < 0n
    const abs = neg ? -this.value : this.value
    const scale = 10n ** BigInt(DIGITS)
    return `${neg ? '-' : ''}${abs / scale}.${(abs % scale).toString().padStart(DIGITS, '0')}`
  }
}
