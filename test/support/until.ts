/** Polls `what` every 20 ms until it holds (true) or `ms` have passed (false). */
export async function until(what: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms
  while (!(await what())) {
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}
