import { existsSync } from 'node:fs'

/** Debian's Chromium, driven by playwright-core (`CHROMIUM_PATH` overrides). */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/**
 * Why the browser suites are skipped, or false to run them. Without Chromium they are skipped
 * with this reason; `.ci/run` installs it and sets REQUIRE_CHROMIUM=1, so in CI a missing
 * browser fails the suites instead of skipping them. (Not a DFLARE_ name: the configuration
 * refuses unknown DFLARE_ variables.)
 */
export const browserSkip: string | false =
  !existsSync(chromiumPath) && process.env.REQUIRE_CHROMIUM !== '1'
    ? `Chromium not found at ${chromiumPath}: apt-get install chromium (or set CHROMIUM_PATH)`
    : false
