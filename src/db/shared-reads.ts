interface Waiter<Row> {
  resolve: (row: Row | undefined) => void;
  reject: (error: unknown) => void;
}

/**
 * Reads by id that concurrent requests share: every id asked for during one turn of the event loop goes
 * to the database in one statement, read when the turn ends (no waiting on a timer, so an idle server
 * adds no latency). A request's DataLoader batches within the request; this spans requests, so it hands
 * out rows, never answers: each caller applies its own abilities to the row it gets.
 */
export class SharedReads<Row> {
  private pending = new Map<string, Array<Waiter<Row>>>();

  constructor(
    private readonly readMany: (ids: string[]) => Promise<ReadonlyMap<string, Row>>,
    private readonly maxIdsPerRead = 500,
  ) {}

  /**
   * The row with this id, read together with every other id asked for in this turn of the event loop;
   * undefined when there is none. Rejects with the read's error, for every id of that read.
   */
  read(id: string): Promise<Row | undefined> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) setImmediate(() => this.flush());
      const waiters = this.pending.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
    });
  }

  private flush(): void {
    const batch = [...this.pending];
    this.pending = new Map();
    for (let start = 0; start < batch.length; start += this.maxIdsPerRead) {
      const part = batch.slice(start, start + this.maxIdsPerRead);
      this.readMany(part.map(([id]) => id)).then(
        (rows) => part.forEach(([id, waiters]) => waiters.forEach((waiter) => waiter.resolve(rows.get(id)))),
        (error: unknown) => part.forEach(([, waiters]) => waiters.forEach((waiter) => waiter.reject(error))),
      );
    }
  }
}
