import type { Command } from 'commander'
import {
  LOCAL_OPERATOR,
  type LocalDeps,
  openLocalIsolation,
  reportError,
} from '../../isolation/local.ts'
import type { VerifyReport } from '../../isolation/verify.ts'

function formatReport(r: VerifyReport): string {
  const lines = [`Checked ${r.tenants} tenant(s), ${r.identifiers} isolation identifier(s).`]
  for (const v of r.violations) {
    if (v.kind === 'shared' || v.kind === 'overlap')
      lines.push(`  ${v.layer}: ${v.kind} ${v.resource} between ${v.tenants.join(', ')}`)
    else if (v.kind === 'missing-layer') lines.push(`  ${v.layer}: tenant ${v.tenant} ${v.detail}`)
    else lines.push(`  ${v.layer}: tenant ${v.tenant} drift, ${v.object} ${v.detail}`)
  }
  lines.push(
    r.ok ? 'OK: isolation holds on every layer.' : `FAILED: ${r.violations.length} violation(s).`,
  )
  return `${lines.join('\n')}\n`
}

/** `dflare isolation verify`: the isolation invariant across all tenants (exit 1 on any violation). */
export function registerIsolation(program: Command, deps: LocalDeps = {}) {
  const iso = program.command('isolation').description('Tenant isolation across all tenants')
  iso
    .command('verify')
    .option('--json', 'print the report as JSON')
    .description(
      'Check that no isolation resource is shared, every tenant has six layers, and nothing drifted',
    )
    .action(async (o: { json?: boolean }) => {
      let code: number
      let close: (() => Promise<void>) | undefined
      try {
        const { service, db } = await openLocalIsolation(deps)
        close = () => db.close()
        const report = await service.verify(LOCAL_OPERATOR)
        process.stdout.write(o.json ? `${JSON.stringify(report)}\n` : formatReport(report))
        code = report.ok ? 0 : 1
      } catch (err) {
        code = reportError(err)
      }
      await close?.()
      process.exitCode = code
    })
}
