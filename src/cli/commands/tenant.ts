import { readFile } from 'node:fs/promises'
import { SingleBar } from 'cli-progress'
import type { Command } from 'commander'
import { problems } from '../../core/errors.ts'
import {
  LOCAL_OPERATOR,
  type LocalDeps,
  openLocalIsolation,
  reportError,
} from '../../isolation/local.ts'
import type { Plan } from '../../isolation/service.ts'
import { LAYERS } from '../../isolation/types.ts'

const SIGN = { create: '+', change: '~', remove: '-' } as const

/** Terraform-like text: the changes grouped by layer, then the totals and the plan hash. */
export function formatPlan(plan: Plan): string {
  const lines = [
    `Tenant ${plan.tenant}: ${plan.operation}${plan.specVersion ? ` spec version ${plan.specVersion}` : ''}`,
  ]
  for (const layer of LAYERS) {
    const changes = plan.changes.filter((c) => c.layer === layer)
    if (changes.length === 0) continue
    lines.push(`  ${layer}:`)
    for (const c of changes) lines.push(`    ${SIGN[c.action]} ${c.driver}:${c.object}`)
  }
  const r = plan.resources
  if (r)
    lines.push(
      `  allocated: VRF ${r.vrf.name} (L3 VNI ${r.vrf.l3vni}, RD/RT ${r.vrf.rd}), VLANs ${r.networks.map((n) => `${n.name}=${n.vlan}/${n.l2vni}`).join(' ')}, PKeys ${r.pkeys.compute}/${r.pkeys.storage}`,
    )
  const s = plan.summary
  lines.push(
    s.create + s.change + s.remove === 0
      ? 'No changes: the tenant matches its spec.'
      : `Plan: ${s.create} to create, ${s.change} to change, ${s.remove} to remove.`,
    `Plan hash: ${plan.hash}`,
  )
  return `${lines.join('\n')}\n`
}

async function specText(file?: string) {
  if (!file) return undefined
  try {
    return file === '-'
      ? await new Response(process.stdin as never).text()
      : await readFile(file, 'utf8')
  } catch (err) {
    throw problems.badRequest(
      `--spec: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    )
  }
}

function progressBar(json: boolean) {
  if (json || !process.stdout.isTTY) return undefined
  return new SingleBar({ format: '  {bar} {value}/{total} {object}', hideCursor: true })
}

async function run(
  deps: LocalDeps,
  fn: (s: Awaited<ReturnType<typeof openLocalIsolation>>['service']) => Promise<number>,
) {
  let code: number
  let close: (() => Promise<void>) | undefined
  try {
    const { service, db } = await openLocalIsolation(deps)
    close = () => db.close()
    code = await fn(service)
  } catch (err) {
    code = reportError(err)
  }
  await close?.()
  process.exitCode = code
}

/** `dflare tenant plan|apply|destroy NAME`: the six isolation layers of one tenant. */
export function registerTenant(program: Command, deps: LocalDeps = {}) {
  const tenant = program
    .command('tenant')
    .description('Plan, apply and destroy the isolation of one tenant')

  tenant
    .command('plan')
    .argument('<name>', 'tenant (realm) name')
    .option(
      '--spec <file>',
      'tenant spec (YAML or JSON; - for stdin); default: the stored latest version',
    )
    .option('--destroy', 'show what destroy would remove')
    .option('--json', 'print the plan as JSON')
    .description('Show per layer what an apply would create, change or remove')
    .action((name: string, o: { spec?: string; json?: boolean; destroy?: boolean }) =>
      run(deps, async (service) => {
        const plan = o.destroy
          ? await service.planDestroy(LOCAL_OPERATOR, name)
          : await service.plan(LOCAL_OPERATOR, name, { spec: await specText(o.spec) })
        process.stdout.write(o.json ? `${JSON.stringify(plan)}\n` : formatPlan(plan))
        return 0
      }),
    )

  tenant
    .command('apply')
    .argument('<name>', 'tenant (realm) name')
    .option(
      '--spec <file>',
      'store this spec (YAML or JSON; - for stdin) as the next version, then apply it',
    )
    .option(
      '--version <n>',
      'roll back: apply this earlier spec version (stored again as the newest)',
    )
    .option('--plan-hash <hash>', 'apply only if the plan still has this hash')
    .option('--json', 'print the result as JSON')
    .description('Allocate, render and apply every layer; resumes an interrupted apply')
    .action(
      (name: string, o: { spec?: string; version?: string; planHash?: string; json?: boolean }) =>
        run(deps, async (service) => {
          if (o.version !== undefined && !/^[1-9]\d*$/.test(o.version)) {
            process.stderr.write('error: --version must be a positive integer\n')
            return 2
          }
          const bar = progressBar(Boolean(o.json))
          let started = false
          const res = await service.apply(LOCAL_OPERATOR, name, {
            spec: await specText(o.spec),
            version: o.version ? Number(o.version) : undefined,
            planHash: o.planHash,
            onProgress: (p) => {
              if (!bar) return
              if (!started) bar.start(p.total, p.done - 1, { object: '' })
              started = true
              bar.update(p.done, { object: `${p.change.driver}:${p.change.object}` })
            },
          })
          bar?.stop()
          if (o.json) process.stdout.write(`${JSON.stringify(res)}\n`)
          else
            process.stdout.write(
              `${formatPlan(res.plan)}Applied: ${res.executed} step(s), run ${res.runId}.\n`,
            )
          return 0
        }),
    )

  tenant
    .command('destroy')
    .argument('<name>', 'tenant (realm) name')
    .option('--json', 'print the result as JSON')
    .description('Remove every layer of the tenant; its numbers and names go into quarantine')
    .action((name: string, o: { json?: boolean }) =>
      run(deps, async (service) => {
        const bar = progressBar(Boolean(o.json))
        let started = false
        const res = await service.destroy(LOCAL_OPERATOR, name, {
          onProgress: (p) => {
            if (!bar) return
            if (!started) bar.start(p.total, p.done - 1, { object: '' })
            started = true
            bar.update(p.done, { object: `${p.change.driver}:${p.change.object}` })
          },
        })
        bar?.stop()
        process.stdout.write(
          o.json
            ? `${JSON.stringify(res)}\n`
            : `${formatPlan(res.plan)}Destroyed: ${res.executed} step(s).\n`,
        )
        return 0
      }),
    )
}
