import { randomBytes, scrypt as scryptCallback, type ScryptOptions, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

import { BadInputError, DomainError } from '../errors';
import { hasUnpairedSurrogate } from '../graphql/text-checks';
import { clientBucket } from '../rate-limiting/client-bucket';

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: ScryptOptions,
) => Promise<Buffer>;

// OWASP's scrypt baseline (N=2^17, r=8, p=1): memory-hard, about 128 MiB per hash.
const PARAMS = { N: 2 ** 17, r: 8, p: 1 };
const KEY_BYTES = 32;
/** The shortest new password, in Unicode code points of its NFKC form (NIST SP 800-63B §5.1.1.2). */
export const MIN_PASSWORD_LENGTH = 12;
/** The longest new password, in Unicode code points of its NFKC form: bounds the work of hashing it. */
export const MAX_PASSWORD_LENGTH = 1024;

/** Hashes made from the NFKC form of the password (see normalizePassword). Every new hash has this tag. */
const NORMALIZED_SCHEME = 'scrypt-nfkc';
/**
 * Hashes made before passwords were normalized, from the string exactly as it arrived. They stay valid: one
 * is tried with the NFKC form, then (only when that differs) with the string as it arrives now.
 */
const LEGACY_SCHEME = 'scrypt';

/**
 * Code points this runtime's Unicode version has not assigned (noncharacters included): Unicode's normalization
 * stability covers assigned characters only, so a later version could normalize them differently and the
 * password would stop matching after an upgrade (UAX #15 "Stabilized Strings": the process fails on them).
 */
const UNASSIGNED = /\p{Cn}/u;

/**
 * node:crypto's options for these parameters. maxmem is what OpenSSL allocates, 128·r·(N + 2 + p) bytes (its
 * V and B arrays), which it compares with maxmem: 256·N·r, the figure used before, is below that for N < p + 2.
 */
function options(params: { N: number; r: number; p: number }): ScryptOptions {
  return { ...params, maxmem: Math.max(256 * params.N * params.r, scryptMemory(params)) };
}

function scryptMemory({ N, r, p }: { N: number; r: number; p: number }): number {
  return 128 * r * (N + 2 + p);
}

/**
 * The most UTF-16 code units of an input that are normalized: NFKC joins at most 4 code points into one (a Greek
 * letter with three marks) and a code point is at most 2 units, so 8 units of input make at least one code point
 * of output, and an input longer than 8 x (MAX_PASSWORD_LENGTH + 1) units is too long a password in any form. 16
 * for margin. The rest is never normalized: NFKC of a megabyte of U+FDFA is 18 MB and 100+ ms of the event loop.
 */
export const MAX_NORMALIZED_INPUT = 16 * (MAX_PASSWORD_LENGTH + 1);

const UNPAIRED_SURROGATE = 'Password contains an unpaired surrogate (invalid UTF-16).';
const NUL = 'Password must not contain the NUL character (U+0000): no sign-in can send it.';
const CONTROL_CHARACTER =
  'Password must not contain a control character (a line break, tab, escape or the like): no sign-in form can type it.';
/**
 * Unicode's control characters (general category Cc: U+0000-U+001F, U+007F-U+009F), which RFC 8265's
 * OpaqueString profile (PRECIS, the IETF's rules for passwords) disallows. Format characters (Cf: the joiner of
 * emoji sequences, direction marks) and spaces stay allowed, as that profile allows them.
 */
const CONTROL = /\p{Cc}/u;
const TOO_LONG_OR_SHORT = `Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long.`;

/**
 * The form of a password that is hashed and compared: Unicode NFKC, so the same password typed on another
 * keyboard, operating system or password manager matches ("é" as U+00E9 or as "e" + U+0301; full-width
 * letters of an East Asian input method and their ASCII; a ligature and its letters).
 *
 * NIST SP 800-63B §5.1.1.2 (and OWASP ASVS 2.1) ask verifiers to normalize with NFKC or NFKD before hashing.
 * NFKC rather than NFC: NFC alone would not match the compatibility forms above, which input methods produce
 * without the user seeing a difference; what NFKC folds on top (those forms) costs a guesser almost nothing
 * to try, so little strength is lost. NFKC rather than NFKD: both match the same passwords; NFKC is the shorter.
 * Never throws (String.prototype.normalize does not, not even on unpaired surrogates, which it keeps).
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** The first `max` code points of `text` (a surrogate pair is never split). */
function firstCodePoints(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = 0;
  let count = 0;
  for (const char of text) {
    if (count++ === max) break;
    end += char.length;
  }
  return text.slice(0, end);
}

/**
 * Why a new password cannot be used, or null when it can. It is judged in its NFKC form (normalizePassword),
 * the one hashed: MIN_PASSWORD_LENGTH to MAX_PASSWORD_LENGTH code points, valid UTF-16 (no unpaired
 * surrogate), only assigned code points, no control characters (RFC 8265; NUL named apart). Every way a
 * password is set (createUser, changePassword, the CLI's first admin, whose standard input can carry what no
 * GraphQL variable may) asks here, so none sets a password that `login` would refuse to take, or that no sign-in
 * form can type. The sentence is for the person choosing the password.
 */
export function newPasswordProblem(password: string): string | null {
  if (password.length > MAX_NORMALIZED_INPUT) return TOO_LONG_OR_SHORT;
  // Refused in every GraphQL variable (text-input.ts), so a sign-in could never send it.
  if (password.includes('\u0000')) return NUL;
  const normalized = normalizePassword(password);
  if (hasUnpairedSurrogate(normalized)) return UNPAIRED_SURROGATE;
  const length = [...normalized].length; // code points (NIST: each counts as one character)
  if (length < MIN_PASSWORD_LENGTH || length > MAX_PASSWORD_LENGTH) return TOO_LONG_OR_SHORT;
  if (UNASSIGNED.test(normalized)) {
    return 'Password contains a character this version of Unicode does not define: choose another.';
  }
  if (CONTROL.test(normalized)) return CONTROL_CHARACTER;
  return null;
}

/**
 * `scrypt-nfkc$N$r$p$salt$hash` of the password's NFKC form (normalizePassword), so parameters can be raised
 * later without breaking stored hashes and a hash made before normalization (`scrypt$...`) is told apart.
 * Checks nothing about the password: callers refuse a bad new one first (newPasswordProblem).
 * @throws BadInputError (BAD_USER_INPUT) when the password holds an unpaired surrogate (it would be hashed as U+FFFD).
 */
export async function hashPassword(password: string): Promise<string> {
  const normalized = normalizePassword(password);
  if (hasUnpairedSurrogate(normalized)) {
    throw new BadInputError(UNPAIRED_SURROGATE, 'password');
  }
  const salt = randomBytes(16);
  const hash = await scrypt(normalized, salt, KEY_BYTES, options(PARAMS));
  return [NORMALIZED_SCHEME, PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

interface StoredHash {
  readonly legacy: boolean;
  readonly salt: Buffer;
  readonly expected: Buffer;
  readonly options: ScryptOptions;
}

/**
 * The most work one verification may take, as 128·N·r·p (the bytes its memory-hard pass goes through: p passes
 * of 128·N·r each): 8 times this version's hash (N=2^17, r=8, p=1), which is the only one it has ever made. It
 * also bounds the memory (128·N·r, at most 1 GiB) and the passes p. Checking memory and p apart, as first done,
 * let N=2^20, r=8, p=16 through: 128 of this version's hashes (over a minute of a libuv thread per attempt).
 */
const MAX_SCRYPT_WORK = 2 ** 30;
/** The shortest derived key a stored hash may hold, in bytes: a shorter one would be matched by guessing. */
const MIN_HASH_BYTES = 16;

const positiveWhole = (text: string | undefined): number =>
  text !== undefined && /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : NaN;

/**
 * A stored hash in one of the two formats, with parameters node:crypto computes and a bounded cost, or null for
 * anything else: no password, a hand-made placeholder an operator reset a password to (`scrypt$1$1$1$reset$...`),
 * a corrupted row. Null matches no password and never throws (it used to reach scrypt, which threw: a 500).
 */
function parseStored(stored: string): StoredHash | null {
  const [scheme, n, r, p, salt, hash, ...rest] = stored.split('$');
  if ((scheme !== NORMALIZED_SCHEME && scheme !== LEGACY_SCHEME) || !salt || !hash || rest.length > 0) return null;
  const params = { N: positiveWhole(n), r: positiveWhole(r), p: positiveWhole(p) };
  const usable =
    params.N >= 2 &&
    (params.N & (params.N - 1)) === 0 &&
    128 * params.N * params.r * params.p <= MAX_SCRYPT_WORK &&
    // OpenSSL's own rule (EVP_PBE_scrypt_ex): N below 2^(128·r/8); N=2^16 with r=1 is refused there (a throw).
    (params.r > 3 || params.N < 2 ** (16 * params.r));
  const expected = Buffer.from(hash, 'base64');
  const saltBytes = Buffer.from(salt, 'base64');
  if (!usable || expected.length < MIN_HASH_BYTES || saltBytes.length === 0) return null;
  return { legacy: scheme === LEGACY_SCHEME, salt: saltBytes, expected, options: options(params) };
}

/**
 * Whether a stored hash is one a password can match (see parseStored): a sign-in verifies any other against the
 * dummy hash of an unknown email, so that it takes as long and tells nothing about the account.
 */
export function isVerifiableHash(stored: string | null | undefined): stored is string {
  return typeof stored === 'string' && parseStored(stored) !== null;
}

async function computesTo(password: string, stored: StoredHash): Promise<boolean> {
  const actual = await scrypt(password, stored.salt, stored.expected.length, stored.options);
  return timingSafeEqual(actual, stored.expected);
}

/** A verification's answer, and how long to wait before giving it (see checkPassword). */
export interface Checked {
  readonly matches: boolean;
  readonly padMs: number;
}

/**
 * No computation and no match for a stored hash no password can match (see parseStored). Otherwise: one scrypt
 * with the NFKC form, cut to MAX_PASSWORD_LENGTH + 1 code points (no longer one can match, and a
 * longer input costs no more). A hash from before normalization gets a second one with the string as it arrived
 * (cut to MAX_PASSWORD_LENGTH + 1 code units, the old rule) when that differs: its owner may have typed any form.
 * A miss on any other hash then waits as long as that second computation would have taken, without computing:
 * how long a wrong password takes does not tell which kind of hash an account has, or whether it exists (an
 * unknown email is verified against a made-up new hash), and a guesser cannot double the scrypt work of a
 * new hash by sending an unnormalized password. Exported for tests; callers use verifyPassword, which waits `padMs`.
 * Never throws on the password or the stored hash.
 */
export async function checkPassword(password: string, stored: string): Promise<Checked> {
  const parsed = parseStored(stored);
  if (!parsed) return { matches: false, padMs: 0 };
  // Cut before normalizing (MAX_NORMALIZED_INPUT): a split pair at the cut ends up past the first MAX + 1 code points.
  const normalized = firstCodePoints(
    normalizePassword(password.slice(0, MAX_NORMALIZED_INPUT)),
    MAX_PASSWORD_LENGTH + 1,
  );
  const raw = password.slice(0, MAX_PASSWORD_LENGTH + 1);
  // Invalid UTF-16 is no password (the API refuses it before any resolver runs); scrypt would read an unpaired
  // surrogate as U+FFFD, so it could otherwise match a password holding that character.
  const valid = !hasUnpairedSurrogate(password);
  const started = performance.now();
  if ((await computesTo(normalized, parsed)) && valid) return { matches: true, padMs: 0 };
  if (raw === normalized) return { matches: false, padMs: 0 };
  if (parsed.legacy) return { matches: (await computesTo(raw, parsed)) && valid, padMs: 0 };
  return { matches: false, padMs: performance.now() - started };
}

const pause = (ms: number) => (ms > 0 ? new Promise<void>((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

/**
 * Whether `password` matches `stored` (hashPassword's format, or the `scrypt$...` one of hashes made before
 * passwords were normalized), with the parameters stored in it, compared in constant time. The password is
 * compared in its NFKC form (normalizePassword); a hash from before normalization also in the form it
 * arrives in. False for any other format (a user without a password has none) and for parameters no scrypt of
 * this service computes (a placeholder, a corrupted row). Never throws on the password or the stored hash.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const checked = await checkPassword(password, stored);
  await pause(checked.padMs);
  return checked.matches;
}

export interface PasswordWorkSettings {
  /** scrypt computations running at once in this process (each holds about 128 MiB). */
  readonly concurrency: number;
  /** Computations that may wait for a turn; one more answers SERVICE_UNAVAILABLE (503). */
  readonly queue: number;
  /**
   * Hashes and verifications one client address (its bucket: an IPv6 address by its /64) may have running or
   * waiting at once; one more answers RATE_LIMITED (429).
   */
  readonly perClient: number;
}

const RETRY_AFTER_SECONDS = 1;

/**
 * Every password hash and verification of the process goes through here: at most `concurrency` scrypt
 * computations run at once and at most `queue` wait, so a burst of sign-ins cannot exhaust memory or make
 * sign-in slow for everyone; one client address may hold only `perClient` of those places.
 */
export class PasswordHasher {
  /** Verifications started by this process: tests count them. */
  verifications = 0;
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly inFlightByClient = new Map<string, number>();

  constructor(
    private readonly settings: PasswordWorkSettings,
    /** Test-only: awaited inside a request's hash or verification while it holds its places (see PauseHooks in authority.ts). */
    private readonly hooks: { duringPasswordCheck?(client: string): Promise<void> } = {},
  ) {}

  /** Computations waiting for a turn. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Hashes a new password for a request from `client` (null: not a request, e.g. the CLI). Throws RATE_LIMITED
   * when that address already has `perClient` hashes or verifications under way (an admin's burst of
   * createUser or changePassword cannot take every place), SERVICE_UNAVAILABLE when the queue is full.
   */
  hash(password: string, client: string | null): Promise<string> {
    if (client === null) return this.run(() => hashPassword(password));
    return this.forClient(client, () =>
      this.run(async () => {
        await this.hooks.duringPasswordCheck?.(client);
        return hashPassword(password);
      }),
    );
  }

  /**
   * Verifies a password against a stored hash for a request from `client`. Throws RATE_LIMITED when that
   * address already has `perClient` verifications under way, SERVICE_UNAVAILABLE when the queue is full;
   * neither is a failed attempt.
   */
  verify(params: { password: string; stored: string; client: string }): Promise<boolean> {
    const { client } = params;
    return this.forClient(client, async () => {
      const checked = await this.run(async () => {
        this.verifications++;
        await this.hooks.duringPasswordCheck?.(client);
        return checkPassword(params.password, params.stored);
      });
      // The wait that evens out a miss's time (checkPassword) holds none of the process's scrypt places, only
      // this address's own (as the second computation of an old hash would).
      await pause(checked.padMs);
      return checked.matches;
    });
  }

  /** Runs `work` holding one of the address's `perClient` places; RATE_LIMITED when none is free. */
  private async forClient<T>(address: string, work: () => Promise<T>): Promise<T> {
    const client = clientBucket(address);
    const inFlight = this.inFlightByClient.get(client) ?? 0;
    if (inFlight >= this.settings.perClient) {
      throw new DomainError(
        'Too many password checks from this address at once: try again in a moment.',
        'RATE_LIMITED',
        {
          retryAfterSeconds: RETRY_AFTER_SECONDS,
        },
      );
    }
    this.inFlightByClient.set(client, inFlight + 1);
    try {
      return await work();
    } finally {
      const left = (this.inFlightByClient.get(client) ?? 1) - 1;
      if (left > 0) this.inFlightByClient.set(client, left);
      else this.inFlightByClient.delete(client);
    }
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.settings.concurrency) {
      this.running++;
    } else {
      if (this.waiting.length >= this.settings.queue) {
        throw new DomainError('The service is busy verifying passwords: try again shortly.', 'SERVICE_UNAVAILABLE', {
          retryAfterSeconds: RETRY_AFTER_SECONDS,
        });
      }
      // The finishing computation hands its place over, so `running` stays counted.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
