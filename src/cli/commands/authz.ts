import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { formatProblem, PolicyTextError } from '../../authz/cedar/parse.ts'
import { evaluateFiles, type RequestJson } from '../../authz/evaluate.ts'

/** Exit codes (contract): 0 allow, 1 deny (a "failure found"), 2 usage or input error. */
const EXIT = { allow: 0, deny: 1, usage: 2 } as const

async function readJson(path: string, what: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch(() => {
    throw new UsageError(`cannot read the ${what} file ${path}`)
  })
  try {
    return JSON.parse(text)
  } catch {
    throw new UsageError(`the ${what} file ${path} is not valid JSON`)
  }
}

class UsageError extends Error {
  override name = 'UsageError'
}

interface EvalOptions {
  policies: string
  entities: string
  request: string
  json?: boolean
}

export async function runAuthzEval(
  opts: EvalOptions,
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
): Promise<number> {
  try {
    const policies = await readFile(opts.policies, 'utf8').catch(() => {
      throw new UsageError(`cannot read the policies file ${opts.policies}`)
    })
    const entities = await readJson(opts.entities, 'entities')
    const request = (await readJson(opts.request, 'request')) as RequestJson
    const result = evaluateFiles(policies, entities, request)
    if (opts.json) out.write(`${JSON.stringify(result)}\n`)
    else {
      out.write(
        `${result.decision.toUpperCase()}${result.determining.length ? ` by ${result.determining.join(', ')}` : ''}\n`,
      )
      for (const e of result.errors) out.write(`  error in ${e.policy}: ${e.message}\n`)
    }
    return EXIT[result.decision]
  } catch (e) {
    const message =
      e instanceof PolicyTextError
        ? `invalid policies: ${e.problems.map(formatProblem).join('; ')}`
        : e instanceof UsageError
          ? e.message
          : `invalid input: ${(e as Error).message}`
    if (opts.json) out.write(`${JSON.stringify({ error: message })}\n`)
    else err.write(`dflare authz eval: ${message}\n`)
    return EXIT.usage
  }
}

/** `dflare authz …` */
export function registerAuthz(program: Command) {
  const authz = program.command('authz').description('authorization: evaluate Cedar policies')
  authz
    .command('eval')
    .description(
      'decide one request with the compiled evaluator; prints the decision and determining policies',
    )
    .requiredOption('--policies <file>', 'Cedar policy set (text; @id annotations name policies)')
    .requiredOption('--entities <file>', 'entities in Cedar JSON form (array)')
    .requiredOption('--request <file>', 'JSON {principal, action, resource, context}')
    .option('--json', 'print one JSON object')
    .action(async (opts: EvalOptions) => {
      process.exitCode = await runAuthzEval(opts)
    })
}
