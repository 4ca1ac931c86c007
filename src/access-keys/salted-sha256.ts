/**
 * SHA-256 of (a secret 64-byte salt || the UTF-8 bytes of a string), computed in JavaScript from the state
 * left after the salt block. The auth cache is keyed by it on every request. node:crypto's one-shot hash
 * costs 1 us in a loop, 12 us once the CPU cache has been flushed, and 4-6 us per request in the running
 * service (profiled); a credential (under 56 bytes) is one compression here, 4 us from a flushed cache.
 * The output is exactly SHA-256's: test/auth/salted-sha256.test.ts checks it against node:crypto.
 */

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const BLOCK_BYTES = 64;
/** The longest message that fits in one block with its 0x80 byte and 8-byte length. */
const ONE_BLOCK_BYTES = BLOCK_BYTES - 9;

/** SHA-256's compression function: folds the 16 words at the start of `w` into `state`. */
function compress(state: Int32Array, w: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

export class SaltedSha256 {
  /** The state after the salt block: every digest starts from here. */
  private readonly salted = new Int32Array(8);
  private readonly state = new Int32Array(8);
  private readonly w = new Int32Array(64);

  constructor(salt: Buffer) {
    if (salt.length !== BLOCK_BYTES) throw new Error(`The salt must be ${BLOCK_BYTES} bytes`);
    this.salted.set(INITIAL_STATE);
    for (let i = 0; i < 16; i++) this.w[i] = salt.readInt32BE(i * 4);
    compress(this.salted, this.w);
  }

  /** The digest as a 16-character string (two bytes per character): a compact Map key, not for display. */
  digest(value: string): string {
    this.state.set(this.salted);
    const compressed = value.length <= ONE_BLOCK_BYTES && this.compressAscii(value);
    if (!compressed) this.compressBytes(Buffer.from(value, 'utf8'));
    // The message words are the credential itself: they do not stay in memory after it is hashed.
    this.w.fill(0);
    return this.output();
  }

  /** One block straight from the string's char codes, when it is ASCII (its UTF-8 is then itself). */
  private compressAscii(value: string): boolean {
    const w = this.w;
    const n = value.length;
    for (let word = 0; word < 16; word++) {
      let packed = 0;
      for (let i = word * 4; i < word * 4 + 4; i++) {
        let byte = 0;
        if (i < n) {
          byte = value.charCodeAt(i);
          if (byte > 0x7f) return false;
        } else if (i === n) {
          byte = 0x80;
        }
        packed = (packed << 8) | byte;
      }
      w[word] = packed;
    }
    // The message length in bits, salt included, in the last word (the one before it stays 0).
    w[15] = (BLOCK_BYTES + n) * 8;
    compress(this.state, w);
    return true;
  }

  private compressBytes(bytes: Buffer): void {
    const n = bytes.length;
    const blocks = Math.ceil((n + 9) / BLOCK_BYTES);
    const padded = Buffer.alloc(blocks * BLOCK_BYTES);
    bytes.copy(padded);
    padded[n] = 0x80;
    padded.writeUIntBE((BLOCK_BYTES + n) * 8, padded.length - 6, 6);
    for (let block = 0; block < blocks; block++) {
      for (let i = 0; i < 16; i++) this.w[i] = padded.readInt32BE(block * BLOCK_BYTES + i * 4);
      compress(this.state, this.w);
    }
    padded.fill(0);
  }

  private output(): string {
    const s = this.state;
    return String.fromCharCode(
      s[0] >>> 16, s[0] & 0xffff, s[1] >>> 16, s[1] & 0xffff, s[2] >>> 16, s[2] & 0xffff, s[3] >>> 16, s[3] & 0xffff,
      s[4] >>> 16, s[4] & 0xffff, s[5] >>> 16, s[5] & 0xffff, s[6] >>> 16, s[6] & 0xffff, s[7] >>> 16, s[7] & 0xffff,
    );
  }
}
