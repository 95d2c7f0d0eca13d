'use strict';
/**
 * The switches that give a Node.js inspector something to find, each with a function of its
 * own name so that a CPU or heap profile points at it:
 *
 * - retainMessageHistory (--leak-kb-per-message N): N KiB kept for ever per accepted message.
 * - blockEventLoop (--block-ms M --block-every-ms P): a synchronous busy-wait of M ms every P ms.
 * - churnBuffers (--churn-mb-per-s R): R MB/s of garbage, dropped at once.
 * - MessageCache (--cache-entries K): the last K messages, memory that levels off.
 *
 * What they allocate lives on V8's heap (arrays of doubles), not in Buffers: a Buffer's bytes
 * are outside the heap, where a sampling heap profile does not see them and where they move the
 * garbage collector only indirectly.
 */

const { performance } = require('node:perf_hooks');

const KIB = 1024;
// 128 doubles: one KiB of array elements.
const DOUBLES_PER_KIB = KIB / 8;
// Churned garbage comes in arrays of 8 KiB: small enough for the young generation, large
// enough that a hundred MB/s is not a million allocations a second.
const CHURN_CHUNK_KIB = 8;
const CHURN_TICK_MS = 10;

// Module-level and never emptied: the leak.
const leakedHistory = [];
let leakedBytes = 0;

/** Keep `kib` KiB about one accepted message, for ever. */
function retainMessageHistory(messageId, kib) {
  const pages = new Array(kib);
  for (let i = 0; i < kib; i++) {
    // i + 0.5 is not a small integer: the elements are unboxed doubles, 8 bytes each.
    pages[i] = new Array(DOUBLES_PER_KIB).fill(i + 0.5);
  }
  leakedHistory.push({ messageId, at: Date.now(), pages });
  leakedBytes += kib * KIB;
}

/** Hold the event loop for `ms` milliseconds, as a long synchronous task would. */
function blockEventLoop(ms, counters = null) {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Spinning on purpose: no timer, socket or promise of this process runs meanwhile.
  }
  counters?.blocked(ms);
}

// The last chunk churned, so that the allocations have a use and cannot be optimised away.
let lastChurned = null;

/** Allocate `bytes` of short-lived arrays and drop them. */
function churnBuffers(bytes) {
  const chunks = Math.max(1, Math.round(bytes / (CHURN_CHUNK_KIB * KIB)));
  for (let i = 0; i < chunks; i++) {
    lastChurned = new Array(CHURN_CHUNK_KIB * DOUBLES_PER_KIB).fill(i + 0.5);
  }
  return chunks * CHURN_CHUNK_KIB * KIB;
}

/** The last `capacity` accepted messages by id, oldest dropped first (a Map keeps order). */
class MessageCache {
  constructor(capacity) {
    this.capacity = capacity;
    this.entries = new Map();
  }

  get size() {
    return this.entries.size;
  }

  remember(messageId, message) {
    if (this.capacity <= 0) return;
    this.entries.set(messageId, message);
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value);
    }
  }
}

/**
 * Start the timers of the switches that run by themselves (block, churn); returns a stop
 * function. `counters` gets what they did: `blocked(ms)`, `churned(bytes)`.
 */
function startFaults(options, counters) {
  const timers = [];
  if (options.blockMs > 0) {
    // blockEventLoop is the timer's own callback: called from a closure, V8 inlined it into
    // the closure once optimised, and the CPU profile blamed "(anonymous)" (seen in a fresh-clone run).
    timers.push(setInterval(blockEventLoop, options.blockEveryMs, options.blockMs, counters));
  }
  if (options.churnMbPerS > 0) {
    const bytesPerMs = (options.churnMbPerS * 1e6) / 1000;
    let owedSince = performance.now();
    let owed = 0;
    timers.push(
      setInterval(() => {
        // What the clock says is due, not a fixed amount per tick: timers fire late under load,
        // and the rate must hold anyway. At most a second's worth after a long stall.
        const now = performance.now();
        owed = Math.min(owed + (now - owedSince) * bytesPerMs, options.churnMbPerS * 1e6);
        owedSince = now;
        if (owed >= CHURN_CHUNK_KIB * KIB) {
          const done = churnBuffers(owed);
          owed -= done;
          counters.churned(done);
        }
      }, CHURN_TICK_MS),
    );
  }
  return () => timers.forEach(clearInterval);
}

module.exports = {
  MessageCache,
  blockEventLoop,
  churnBuffers,
  retainMessageHistory,
  startFaults,
  leakedBytes: () => leakedBytes,
};
