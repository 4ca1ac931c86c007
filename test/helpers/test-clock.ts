import type { Clock } from '../../src/access-keys/clock';

export const DAY_MS = 86_400_000;

/** A clock a test moves forward by hand: the system time plus an offset, so keys can age without waiting. */
export class TestClock implements Clock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  advance(ms: number): void {
    this.offsetMs += ms;
  }
}
