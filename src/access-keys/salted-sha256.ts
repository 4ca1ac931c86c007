import { createHash, type Hash } from 'node:crypto';

/** SHA-256's block size: a salt of exactly one block is absorbed once, and every digest copies that state. */
const BLOCK_BYTES = 64;

/**
 * SHA-256 of (a secret 64-byte salt || the UTF-8 bytes of a string), from node:crypto: the salt is absorbed
 * once into a `Hash`, and each digest continues from a `.copy()` of that state. The auth cache is keyed by
 * it on every request. Same value as before this used node:crypto (a hand-written SHA-256 did the same
 * work), so nothing keyed by it changes; test/auth/salted-sha256.test.ts checks it against createHash.
 */
export class SaltedSha256 {
  /** The state after the salt block: every digest starts from a copy of it. */
  private readonly salted: Hash;

  /** @throws Error when `salt` is not exactly 64 bytes (one SHA-256 block). */
  constructor(salt: Buffer) {
    if (salt.length !== BLOCK_BYTES) throw new Error(`The salt must be ${BLOCK_BYTES} bytes`);
    this.salted = createHash('sha256').update(salt);
  }

  /**
   * The 32-byte digest as a 16-character string (two bytes per character, big-endian): a compact Map key,
   * not for display.
   */
  digest(value: string): string {
    // utf16le reads each byte pair low byte first: swapping them gives the big-endian pairs of the digest.
    return this.salted.copy().update(value, 'utf8').digest().swap16().toString('utf16le');
  }
}
