import { setFlagsFromString } from 'node:v8'

/**
 * Turns off V8's allocation-site pretenuring for this process. On a serving control plane it
 * decides that sites whose objects often survive one scavenge (request, response, row and log
 * objects that happen to be in flight) should allocate straight into the old generation: there
 * they outlive the request by seconds, every scavenge must also trace their pointers into the
 * young generation, and the old generation fills and is marked again and again. Measured with
 * `--trace-gc-nvp` on the gateway bench (4 connections, PostgreSQL): 4.8–6.2 % of the bytes
 * allocated were promoted and a scavenge paused 6.8–7.2 ms on average; without pretenuring
 * 0.7 % and 3.6 ms. Scavenge pauses stop the event loop, so they are the latency tail.
 *
 * The flag is read whenever V8 weighs an allocation site, so setting it at run time (before
 * the plane serves) takes effect; it is idempotent.
 */
export function tuneGarbageCollection() {
  setFlagsFromString('--no-allocation-site-pretenuring')
}
