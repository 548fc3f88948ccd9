/**
 * The bridge to cedar-wasm for everything that is not evaluation: parsing policy text into the
 * JSON form our compiler consumes, validation against the schema, formatting, and turning the
 * reference's byte offsets into line and column numbers people can use.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { UnsupportedPolicyError } from './errors.ts'
import type { PolicyJson, PolicySource } from './policyset.ts'

export interface PolicyProblem {
  /** Policy id when the problem belongs to one policy. */
  policy?: string
  message: string
  /** 1-based position in the submitted text, when the reference reports one. */
  line?: number
  column?: number
}

export class PolicyTextError extends Error {
  override name = 'PolicyTextError'
  readonly problems: PolicyProblem[]
  constructor(problems: PolicyProblem[]) {
    super(problems.map(formatProblem).join('; '))
    this.problems = problems
  }
}

export function formatProblem(p: PolicyProblem): string {
  const where = p.line ? `${p.line}:${p.column} ` : ''
  return `${where}${p.policy ? `${p.policy}: ` : ''}${p.message}`
}

/** 1-based line and column of a UTF-8 byte offset (cedar reports byte offsets). */
export function lineColumn(text: string, byteOffset: number): { line: number; column: number } {
  const prefix = Buffer.from(text, 'utf8').subarray(0, byteOffset).toString('utf8')
  const lines = prefix.split('\n')
  return { line: lines.length, column: lines[lines.length - 1]!.length + 1 }
}

function problemsOf(
  text: string,
  errors: cedar.DetailedError[],
  policy?: string,
  offsetBase = 0,
): PolicyProblem[] {
  return errors.map((e) => {
    const loc = e.sourceLocations?.[0]
    const pos = loc ? lineColumn(text, offsetBase + loc.start) : undefined
    const label = loc?.label ? ` (${loc.label})` : ''
    return { policy, message: `${e.message}${label}`, ...pos }
  })
}

/** One policy's text to its JSON form; throws PolicyTextError when it does not parse. */
export function compileText(text: string): PolicyJson {
  const answer = cedar.policyToJson(text)
  if (answer.type !== 'success') throw new PolicyTextError(problemsOf(text, answer.errors))
  return answer.json as unknown as PolicyJson
}

export interface ParsedPolicy extends PolicySource {
  text: string
}

/**
 * A policy set text to its policies, in textual order. Ids come from `@id("…")` annotations
 * (required by default: ids are what decisions cite; otherwise Cedar's `policyN`), unique.
 */
export function parsePolicySetText(text: string, requireIds = true): ParsedPolicy[] {
  const check = cedar.checkParsePolicySet({ staticPolicies: text })
  if (check.type !== 'success') throw new PolicyTextError(problemsOf(text, check.errors))
  const parts = cedar.policySetTextToParts(text)
  if (parts.type !== 'success') throw new PolicyTextError(problemsOf(text, parts.errors))
  if (parts.policy_templates.length > 0)
    throw new PolicyTextError([{ message: 'policy templates are not supported' }])
  // policySetTextToParts sorts by the generated ids policy0, policy1, … as strings.
  const generated = parts.policies.map((_, i) => `policy${i}`).sort()
  const ordered: string[] = []
  generated.forEach((id, k) => {
    ordered[Number(id.slice('policy'.length))] = parts.policies[k]!
  })
  const seen = new Set<string>()
  const problems: PolicyProblem[] = []
  const out: ParsedPolicy[] = []
  ordered.forEach((policyText, i) => {
    const json = compileText(policyText)
    const id = json.annotations?.id ?? (requireIds ? undefined : `policy${i}`)
    if (!id) {
      problems.push({ policy: `policy${i}`, message: 'every policy needs an @id("…") annotation' })
      return
    }
    if (seen.has(id)) problems.push({ policy: id, message: 'duplicate policy id' })
    seen.add(id)
    out.push({ id, json, text: policyText })
  })
  if (problems.length > 0) throw new PolicyTextError(problems)
  return out
}

/** Strict validation against the schema; problems carry line and column in `text`. */
export function validatePolicyText(text: string, schema: cedar.Schema): PolicyProblem[] {
  const answer = cedar.validate({ schema, policies: { staticPolicies: text } })
  if (answer.type !== 'success') return problemsOf(text, answer.errors)
  return answer.validationErrors.flatMap((v) => problemsOf(text, [v.error], v.policyId))
}

export function formatPolicyText(text: string): string {
  const answer = cedar.formatPolicies({ policyText: text, lineWidth: 100, indentWidth: 2 })
  if (answer.type !== 'success') throw new PolicyTextError(problemsOf(text, answer.errors))
  return answer.formatted_policy
}

/** Rejects constructs our compiler does not implement, at load time rather than per request. */
export function assertSupported(json: PolicyJson, id: string) {
  const walk = (v: unknown): void => {
    if (typeof v === 'number' && !Number.isSafeInteger(v))
      throw new UnsupportedPolicyError(
        `policy ${id}: integer literal ${v} is outside ±2^53 (not supported)`,
      )
    if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x)
  }
  walk(json)
}
