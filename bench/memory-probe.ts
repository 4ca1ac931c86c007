/**
 * Preloaded (`node --expose-gc --require dist/bench/memory-probe.js`) into the server process that bench/run.ts
 * measures for memory, never into the service otherwise: it reads the process's memory from inside it, over
 * the IPC channel the bench opens. On `{ type: 'memory' }` it runs full (mark-compact) garbage collections and
 * answers with a MemoryReading.
 *
 * Why from inside: RSS read from /proc at an arbitrary moment under load is mostly V8's heap sizing, not what
 * the process keeps. Between two mark-compacts the old space holds every promoted object that has died since,
 * and V8 lets it grow by a factor that it picks from how fast it collects against how fast the program
 * allocates; the young generation grows up to its limit too. Only the heap after a full collection is what
 * the process holds on to (docs/performance.md, "Memory: no per-request growth").
 */

/** What one reading reports, in bytes (process.memoryUsage() after full collections). */
export interface MemoryReading {
  type: 'memory';
  /** Live JavaScript objects: what a leak grows. */
  heapUsedBytes: number;
  /** What V8 has reserved for the JavaScript heap. */
  heapTotalBytes: number;
  /** Memory of C++ objects bound to JavaScript objects (buffers among them). */
  externalBytes: number;
  /** The whole process's resident memory. */
  rssBytes: number;
}

/** Full collections per reading: a second one frees what the first one's finalizers and weak callbacks let go. */
const COLLECTIONS = 2;

const gc = (globalThis as { gc?: () => void }).gc;

process.on('message', (message: unknown) => {
  if ((message as { type?: unknown } | null)?.type !== 'memory') return;
  if (!gc) throw new Error('memory-probe needs node --expose-gc');
  for (let i = 0; i < COLLECTIONS; i++) gc();
  const usage = process.memoryUsage();
  const reading: MemoryReading = {
    type: 'memory',
    heapUsedBytes: usage.heapUsed,
    heapTotalBytes: usage.heapTotal,
    externalBytes: usage.external,
    rssBytes: usage.rss,
  };
  process.send?.(reading);
});
// The channel must not keep the server alive once it has closed everything else on SIGTERM.
process.channel?.unref();
