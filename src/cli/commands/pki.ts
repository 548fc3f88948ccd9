import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { type Command, Option } from 'commander'
import { systemClock } from '../../core/clock.ts'
import { ConfigError, parse } from '../../core/config/index.ts'
import { type Db, openDb, pendingMigrations } from '../../core/db/index.ts'
import { Problem } from '../../core/errors.ts'
import type { EventSink, SecurityEvent } from '../../core/events.ts'
import { coreMigrations } from '../../core/migrations.ts'
import {
  CaError,
  exportRoot,
  importRoot,
  openCa,
  removeRoot,
  rotateIntermediate,
} from '../../pki/ca-store.ts'
import {
  type CertificateRecord,
  REVOCATION_REASONS,
  type RevocationReason,
} from '../../pki/inventory.ts'
import { KekError, loadKek, writePublicFile, writeSecretFile } from '../../pki/kek.ts'
import { pkiMigrations } from '../../pki/migrations.ts'
import { PkiService } from '../../pki/service.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { CliError, EXIT } from '../exit.ts'

/**
 * `dflare pki …`: the operator's view of the internal CA. Works directly on $DFLARE_HOME/pki and
 * the database (with embedded PGlite, while the server is stopped; with PostgreSQL, any time).
 * Exit 0 ok, 1 failure (e.g. no such certificate), 2 usage or configuration error.
 */
export interface PkiCliOptions {
  /** Where CLI-side security events go; the composition root passes the audit sink. */
  eventSink?: (db: Db) => EventSink
}

/** Until an audit sink is wired, events go to stderr as JSON lines (never dropped silently). */
const stderrSink: EventSink = {
  async record(event: SecurityEvent) {
    process.stderr.write(
      `${JSON.stringify({ event: { ...event, time: event.time ?? new Date() } })}\n`,
    )
  },
}

class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage)
  }
}

async function context(opts: PkiCliOptions) {
  const { config } = loadDflareConfig()
  const home = config.core.home
  const dir = join(home, 'pki')
  const kek = await loadKek(config.pki, home)
  return {
    config,
    dir,
    kek,
    async service() {
      const db = config.core.databaseUrl
        ? await openDb({ kind: 'postgres', url: config.core.databaseUrl.toString() })
        : await openDb({ kind: 'pglite', dataDir: join(home, 'data') })
      if ((await pendingMigrations(db, [coreMigrations, pkiMigrations])).length) {
        await db.close()
        throw new ConfigError(
          'the database is not initialised for the PKI: start the server once (dflare up)',
        )
      }
      const { ca } = await openCa({ dir, kek })
      const service = new PkiService({
        db,
        ca,
        events: opts.eventSink?.(db) ?? stderrSink,
        clock: systemClock,
        policy: {
          trustDomain: config.pki.trustDomain,
          serviceCertTtl: config.pki.serviceCertTtl,
          crlValidity: config.pki.crlValidity,
          expiryWarning: config.pki.expiryWarning,
        },
      })
      return { service, close: () => db.close() }
    },
  }
}

function run(opts: PkiCliOptions, fn: (ctx: Awaited<ReturnType<typeof context>>) => Promise<void>) {
  return async () => {
    try {
      await fn(await context(opts))
    } catch (err) {
      if (err instanceof CliError || err instanceof ConfigError) throw err
      if (err instanceof KekError) throw new CliError(`pki: ${err.message}`, EXIT.usage)
      if (err instanceof Problem || err instanceof CaError)
        throw new CliError(`pki: ${err.message}`, EXIT.failure)
      throw err
    }
  }
}

function print(json: boolean, data: unknown, text: () => string) {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${text()}\n`)
}

function row(c: CertificateRecord) {
  return {
    serial: c.serial,
    kind: c.kind,
    subject: c.subject,
    spiffeId: c.spiffeId,
    tenant: c.tenant,
    sans: c.sans.map((s) => `${s.type}:${s.value}`),
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    status: c.status,
    revokedAt: c.revokedAt?.toISOString() ?? null,
    revocationReason: c.revocationReason,
  }
}

const duration = (v: string) => {
  try {
    return parse.duration(300_000, 366 * 86_400_000)(v)
  } catch {
    throw new UsageError(`--ttl ${v}: expected a duration between 5m and 366d (e.g. 24h)`)
  }
}

async function readPassphrase(file: string | undefined): Promise<string> {
  if (!file) throw new UsageError('--passphrase-file is required')
  return (await readFile(file, 'utf8')).replace(/\r?\n$/, '')
}

async function writeIssued(
  out: string,
  issued: { chainPem: string; keyPem?: string },
  caPem: string,
) {
  await mkdir(out, { recursive: true, mode: 0o700 })
  await writePublicFile(join(out, 'cert.pem'), issued.chainPem)
  await writePublicFile(join(out, 'ca.crt'), caPem)
  if (issued.keyPem) await writeSecretFile(join(out, 'key.pem'), issued.keyPem)
}

export function registerPki(program: Command, opts: PkiCliOptions = {}) {
  const pki = program.command('pki').description('internal CA, service certificates, revocation')

  pki
    .command('ca')
    .description('show the CA chain')
    .option('--json', 'machine-readable output')
    .option('--pem', 'print the root and intermediate certificates as PEM')
    .action((o: { json?: boolean; pem?: boolean }) =>
      run(opts, async (ctx) => {
        const { ca, rootOnline } = await openCa({ dir: ctx.dir, kek: ctx.kek })
        const info = {
          trustDomain: ctx.config.pki.trustDomain,
          caCertPath: join(ctx.dir, 'ca.crt'),
          root: {
            subject: ca.root.subject,
            serial: ca.root.serialNumber.toLowerCase(),
            notAfter: ca.root.notAfter.toISOString(),
            keyOnline: rootOnline,
          },
          intermediate: {
            subject: ca.intermediate.subject,
            serial: ca.intermediate.serialNumber.toLowerCase(),
            notAfter: ca.intermediate.notAfter.toISOString(),
          },
          ...(o.pem ? { chain: ca.chainPem } : {}),
        }
        print(!!o.json, info, () =>
          o.pem
            ? ca.chainPem.trim()
            : [
                `trust domain   ${info.trustDomain}`,
                `root           ${info.root.subject}  not after ${info.root.notAfter}  key ${rootOnline ? 'ONLINE' : 'offline'}`,
                `intermediate   ${info.intermediate.subject}  not after ${info.intermediate.notAfter}`,
                `ca.crt         ${info.caCertPath}`,
              ].join('\n'),
        )
      })(),
    )

  pki
    .command('list')
    .description('list issued certificates')
    .addOption(new Option('--status <status>').choices(['valid', 'revoked', 'expired']))
    .addOption(new Option('--kind <kind>').choices(['server', 'component', 'workload']))
    .option('--tenant <tenant>')
    .option('--json', 'machine-readable output')
    .action((o: { status?: 'valid'; kind?: 'server'; tenant?: string; json?: boolean }) =>
      run(opts, async (ctx) => {
        const { service, close } = await ctx.service()
        try {
          const items = (await service.list(o)).map(row)
          print(
            !!o.json,
            { items },
            () =>
              items
                .map(
                  (c) =>
                    `${c.serial}  ${c.status.padEnd(7)}  ${c.notAfter}  ${c.spiffeId ?? c.sans.join(',')}`,
                )
                .join('\n') || '(no certificates)',
          )
        } finally {
          await close()
        }
      })(),
    )

  pki
    .command('issue')
    .description('issue a component certificate (key generated here) or sign a CSR for an identity')
    .option('--component <name>', 'platform component, e.g. gateway')
    .option(
      '--identity <spiffe-id>',
      'with --csr: a tenant workload identity spiffe://TD/tenant/T/…',
    )
    .option('--csr <file>', 'PKCS#10 request (PEM); the key never leaves its host')
    .option('--host <host...>', 'extra DNS names / IPs for a component certificate')
    .option('--ttl <duration>', 'lifetime (default pki.serviceCertTtl)')
    .requiredOption(
      '--out <dir>',
      'writes cert.pem (chain), ca.crt and key.pem (0600, generated keys only)',
    )
    .option('--json', 'machine-readable output')
    .action(
      (o: {
        component?: string
        identity?: string
        csr?: string
        host?: string[]
        ttl?: string
        out: string
        json?: boolean
      }) =>
        run(opts, async (ctx) => {
          if (!!o.component === !!o.identity)
            throw new UsageError('give exactly one of --component or --identity')
          if (o.identity && !o.csr) throw new UsageError('--identity needs --csr')
          const ttlMs = o.ttl ? duration(o.ttl) : undefined
          const csr = o.csr ? await readFile(o.csr, 'utf8') : undefined
          const { service, close } = await ctx.service()
          try {
            const issued = o.component
              ? await service
                  .issueComponent({ name: o.component, csr, hosts: o.host, ttlMs })
                  .catch((e: Error) => {
                    if (e instanceof Problem) throw e
                    throw new UsageError(e.message)
                  })
              : await service.issueFromCsr(
                  { identity: o.identity!, csr: csr!, ttlMs },
                  {
                    actor: { kind: 'system', id: 'cli' },
                    tenant: 'platform',
                    principal: { type: 'Dflare::Service', id: 'cli' },
                  },
                )
            await writeIssued(resolve(o.out), issued, service.ca.rootPem)
            print(
              !!o.json,
              row(issued.certificate),
              () =>
                `issued ${issued.certificate.serial} (${issued.certificate.spiffeId}) into ${resolve(o.out)}`,
            )
          } finally {
            await close()
          }
        })(),
    )

  pki
    .command('renew <serial>')
    .description('issue a successor with the same identity')
    .option('--csr <file>', 'PKCS#10 request for the new key (else a key is generated here)')
    .requiredOption('--out <dir>')
    .option('--json', 'machine-readable output')
    .action((serial: string, o: { csr?: string; out: string; json?: boolean }) =>
      run(opts, async (ctx) => {
        const csr = o.csr ? await readFile(o.csr, 'utf8') : undefined
        const { service, close } = await ctx.service()
        try {
          const issued = await service.renew(serial, { csr })
          await writeIssued(resolve(o.out), issued, service.ca.rootPem)
          print(
            !!o.json,
            row(issued.certificate),
            () => `renewed ${serial} as ${issued.certificate.serial}`,
          )
        } finally {
          await close()
        }
      })(),
    )

  pki
    .command('revoke <serial>')
    .description('revoke a certificate (published in the next CRL)')
    .addOption(
      new Option('--reason <reason>').choices([...REVOCATION_REASONS]).default('unspecified'),
    )
    .option('--json', 'machine-readable output')
    .action((serial: string, o: { reason: RevocationReason; json?: boolean }) =>
      run(opts, async (ctx) => {
        const { service, close } = await ctx.service()
        try {
          const rec = await service.revoke(serial, o.reason)
          print(!!o.json, row(rec), () => `revoked ${rec.serial} (${o.reason})`)
        } finally {
          await close()
        }
      })(),
    )

  pki
    .command('crl')
    .description('print the current CRL (PEM)')
    .option('--out <file>', 'write DER to a file instead')
    .option('--json', 'machine-readable output')
    .action((o: { out?: string; json?: boolean }) =>
      run(opts, async (ctx) => {
        const { service, close } = await ctx.service()
        try {
          const crl = await service.crl()
          if (o.out) await writeFile(o.out, crl.der)
          print(
            !!o.json,
            {
              number: crl.number,
              thisUpdate: crl.thisUpdate.toISOString(),
              nextUpdate: crl.nextUpdate.toISOString(),
              pem: crl.pem,
            },
            () => (o.out ? `CRL #${crl.number} written to ${o.out}` : crl.pem.trim()),
          )
        } finally {
          await close()
        }
      })(),
    )

  const root = pki.command('root').description('take the root CA key offline and back')
  root
    .command('export')
    .description('write the root key as passphrase-encrypted PKCS#8 (store it offline)')
    .requiredOption('--out <file>')
    .option('--passphrase-file <file>', 'file holding the passphrase (at least 12 characters)')
    .action((o: { out: string; passphraseFile?: string }) =>
      run(opts, async (ctx) => {
        const pem = await exportRoot(ctx.dir, ctx.kek, await readPassphrase(o.passphraseFile))
        if (existsSync(o.out)) throw new UsageError(`${o.out} exists; refusing to overwrite`)
        await writeSecretFile(o.out, pem)
        process.stdout.write(
          `root key exported to ${o.out}; now run: dflare pki root remove --yes\n`,
        )
      })(),
    )
  root
    .command('remove')
    .description('delete the root key from this system (the intermediate keeps issuing)')
    .option('--yes', 'confirm: you hold an exported copy')
    .action((o: { yes?: boolean }) =>
      run(opts, async (ctx) => {
        if (!o.yes)
          throw new UsageError('this deletes the root key; export it first, then pass --yes')
        const removed = await removeRoot(ctx.dir)
        process.stdout.write(
          removed ? 'root key removed; the root CA is offline\n' : 'root key was already offline\n',
        )
      })(),
    )
  root
    .command('import')
    .description('bring an exported root key back (e.g. to renew the intermediate)')
    .requiredOption('--in <file>')
    .option('--passphrase-file <file>')
    .action((o: { in: string; passphraseFile?: string }) =>
      run(opts, async (ctx) => {
        await importRoot(
          ctx.dir,
          ctx.kek,
          await readFile(o.in, 'utf8'),
          await readPassphrase(o.passphraseFile),
        )
        process.stdout.write('root key imported; the root CA is online\n')
      })(),
    )
  pki
    .command('rotate-intermediate')
    .description('replace the intermediate CA now (root key must be online); restart servers after')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) =>
      run(opts, async (ctx) => {
        const cert = await rotateIntermediate(ctx.dir, ctx.kek)
        const info = {
          subject: cert.subject,
          serial: cert.serialNumber.toLowerCase(),
          notAfter: cert.notAfter.toISOString(),
        }
        print(!!o.json, info, () => `new intermediate ${info.serial}, not after ${info.notAfter}`)
      })(),
    )
  return pki
}
