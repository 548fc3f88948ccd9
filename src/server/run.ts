import type { Logger } from 'pino'
import { createControlPlane, type PlaneOptions } from './compose.ts'
import type { Config } from './config.ts'

/**
 * Runs the control plane until SIGTERM/SIGINT, then shuts down gracefully: stop accepting,
 * let in-flight requests finish (up to the grace period), stop components, close the database.
 */
export async function runUntilSignal(
  config: Config,
  log: Logger,
  options: PlaneOptions = {},
): Promise<void> {
  const started = performance.now()
  const plane = await createControlPlane(config, log, options)
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    const force = setTimeout(() => {
      log.error('shutdown grace period exceeded; exiting')
      process.exit(1)
    }, config.server.shutdownGrace + 5_000)
    force.unref()
    try {
      await plane.close()
      log.info('stopped')
      process.exit(0)
    } catch (err) {
      log.error({ err }, 'shutdown failed')
      process.exit(1)
    }
  }
  // Installed before anything is announced (Node only traps a signal once a listener exists);
  // repeated signals during shutdown are ignored; the grace timer bounds a hung shutdown.
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
  // SIGHUP renews this process's service certificates now (e.g. after a suspected key
  // compromise or an intermediate rotation) and refreshes the CRL; nothing restarts.
  process.on('SIGHUP', () => {
    if (stopping) return
    plane.rotateIdentities().then(
      (n) => log.info({ certificates: n }, 'service certificates renewed (SIGHUP)'),
      (err: Error) => log.error({ err: err.message }, 'service certificate renewal failed'),
    )
  })
  const url = await plane.listen()
  ;(globalThis as { dflareKeepAlive?: boolean }).dflareKeepAlive = true
  log.info(
    {
      url: url.toString(),
      components: plane.local.join(','),
      ...(plane.internalUrl ? { internalUrl: plane.internalUrl.toString() } : {}),
      home: config.core.home,
      database: plane.runtime.db.engine,
      objectStore: plane.runtime.objects.location,
      caCert: plane.caPath,
      startupMs: Math.round(performance.now() - started),
      rssMiB: Math.round(process.memoryUsage().rss / 1048576),
    },
    'dflare is up',
  )
}
