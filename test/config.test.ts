import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ConfigError, loadConfig, nodeEnvWarning } from '../src/config';

describe('configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crm-access-config-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const file = (name: string, content: string): string => {
    const target = path.join(dir, name);
    fs.writeFileSync(target, content);
    return target;
  };

  describe('when ACCESS_KEY_SECRET is a keyring (rotation)', () => {
    const [current, older, oldest] = [randomBytes(32), randomBytes(32), randomBytes(48)];

    it('takes a comma-separated list, current first, then older ones', () => {
      const config = loadConfig({
        ACCESS_KEY_SECRET: [current, older, oldest].map((s) => s.toString('base64')).join(', '),
      });
      expect(config.accessKeySecret).toEqual(current);
      expect(config.olderAccessKeySecrets).toEqual([older, oldest]);
    });

    it('takes one secret a line from ACCESS_KEY_SECRET_FILE', () => {
      const config = loadConfig({
        ACCESS_KEY_SECRET_FILE: file('keyring', `${current.toString('base64')}\n${older.toString('base64')}\n`),
      });
      expect(config.accessKeySecret).toEqual(current);
      expect(config.olderAccessKeySecrets).toEqual([older]);
    });

    it('refuses a short entry, naming it, and a secret listed twice', () => {
      expect(() => loadConfig({ ACCESS_KEY_SECRET: `${current.toString('base64')},c2hvcnQ=` })).toThrow(
        /ACCESS_KEY_SECRET \(entry 2\) must be at least 32/,
      );
      expect(() =>
        loadConfig({ ACCESS_KEY_SECRET: `${current.toString('base64')},${current.toString('base64')}` }),
      ).toThrow(/the same secret twice/);
    });

    // base64 decoding stops at the first padding or foreign character, so "NEW OLD" or "NEW;OLD" read as NEW
    // alone: the old secret silently left the keyring (review C of issue 18).
    it.each([' ', ';', ' | ', '\t'])(
      'refuses two secrets joined by %j instead of a comma or a line break, saying how to list them',
      (separator) => {
        const joined = `${current.toString('base64')}${separator}${older.toString('base64')}`;
        expect(() => loadConfig({ ACCESS_KEY_SECRET: joined })).toThrow(
          /ACCESS_KEY_SECRET is not base64.*commas or line breaks/,
        );
        expect(() => loadConfig({ ACCESS_KEY_SECRET_FILE: file('joined', joined) })).toThrow(
          /ACCESS_KEY_SECRET_FILE .* is not base64/,
        );
      },
    );

    it('takes CRLF line breaks, spaces around entries and base64url', () => {
      const config = loadConfig({
        ACCESS_KEY_SECRET_FILE: file('crlf', ` ${current.toString('base64')} \r\n${older.toString('base64url')}  \r\n`),
      });
      expect(config.accessKeySecret).toEqual(current);
      expect(config.olderAccessKeySecrets).toEqual([older]);
    });
  });

  describe('when secrets come from files (the *_FILE convention)', () => {
    it('reads ACCESS_KEY_SECRET_FILE and DATABASE_URL_FILE, trimming the trailing newline editors and `echo` add', () => {
      const secret = randomBytes(32);
      const config = loadConfig({
        ACCESS_KEY_SECRET_FILE: file('secret', `${secret.toString('base64')}\n`),
        DATABASE_URL_FILE: file('url', '  postgres://crm:pw@db:5432/crm\n'),
      });
      expect(config.accessKeySecret).toEqual(secret);
      expect(config.databaseUrl).toBe('postgres://crm:pw@db:5432/crm');
    });

    it('satisfies production, which requires the secret', () => {
      const config = loadConfig({
        NODE_ENV: 'production',
        ACCESS_KEY_SECRET_FILE: file('prod-secret', randomBytes(32).toString('base64')),
      });
      expect(config.accessKeySecret).toHaveLength(32);
    });

    it.each(['ACCESS_KEY_SECRET', 'DATABASE_URL'])('refuses %s given both directly and as a file', (name) => {
      const value = name === 'DATABASE_URL' ? 'postgres://a@b/c' : randomBytes(32).toString('base64');
      expect(() => loadConfig({ [name]: value, [`${name}_FILE`]: file(`both-${name}`, value) })).toThrow(
        new ConfigError(`Set ${name} or ${name}_FILE, not both.`),
      );
    });

    it('names the file, never its contents, when it is missing, empty or too short a secret', () => {
      const missing = path.join(dir, 'missing');
      expect(() => loadConfig({ DATABASE_URL_FILE: missing })).toThrow(
        `DATABASE_URL_FILE names a file that cannot be read: ${missing} (ENOENT).`,
      );
      expect(() => loadConfig({ DATABASE_URL_FILE: file('empty', '\n') })).toThrow(
        /DATABASE_URL_FILE names an empty file/,
      );
      const short = file('short', 'c2hvcnQ=');
      expect(() => loadConfig({ ACCESS_KEY_SECRET_FILE: short })).toThrow(
        `ACCESS_KEY_SECRET_FILE (${short}) must be at least 32 random bytes`,
      );
    });
  });

  describe('operations settings', () => {
    it('has defaults: no metrics port, request logs only in development, bounded timeouts', () => {
      const config = loadConfig({ NODE_ENV: 'production', ACCESS_KEY_SECRET: randomBytes(32).toString('base64') });
      expect(config.metrics).toEqual({ port: null, host: '127.0.0.1' });
      expect(config.logRequests).toBe(false);
      expect(loadConfig({}).logRequests).toBe(true);
      expect(config.http).toEqual({
        requestTimeoutMs: 30_000,
        headersTimeoutMs: 10_000,
        keepAliveTimeoutMs: 72_000,
        maxConnections: null,
      });
      expect(config.loadShedding).toEqual({ maxEventLoopDelayMs: 1000, maxHeapUsedBytes: null });
    });

    it('never serves metrics on the public port', () => {
      expect(() => loadConfig({ PORT: '4000', METRICS_PORT: '4000' })).toThrow(/METRICS_PORT must differ from PORT/);
      expect(loadConfig({ PORT: '4000', METRICS_PORT: '9464', HOST: '0.0.0.0' }).metrics).toEqual({
        port: 9464,
        host: '0.0.0.0',
      });
    });

    // Read with Number(), PORT=" " listened on a random port (0), 0x1F93 on 8083 and 4e3 on 4000, and a blank
    // DB_STATEMENT_TIMEOUT_MS or MAX_EVENT_LOOP_DELAY_MS turned its guard off (0).
    it('reads numbers as plain decimal digits: a blank one takes its default (or none), any other form is refused', () => {
      const blank = loadConfig({
        PORT: ' ',
        DB_STATEMENT_TIMEOUT_MS: '  ',
        MAX_EVENT_LOOP_DELAY_MS: '\t',
        METRICS_PORT: ' ',
      });
      expect(blank.port).toBe(4000);
      expect(blank.db.statementTimeoutMs).toBe(5000);
      expect(blank.db.idleInTransactionTimeoutMs).toBe(5000);
      expect(loadConfig({ DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '0' }).db.idleInTransactionTimeoutMs).toBe(0);
      expect(blank.loadShedding.maxEventLoopDelayMs).toBe(1000);
      expect(blank.metrics.port).toBeNull();
      expect(loadConfig({ MAX_CONNECTIONS: ' ', MAX_HEAP_USED_MB: ' ' })).toMatchObject({
        http: { maxConnections: null },
        loadShedding: { maxHeapUsedBytes: null },
      });
      expect(loadConfig({ PORT: ' 8080 ' }).port).toBe(8080);
      for (const bad of ['0x1F93', '4e3', '4000.0', '+4000', '-1', '4 000', '1_000', 'Infinity']) {
        expect(() => loadConfig({ PORT: bad })).toThrow(
          new ConfigError(`PORT must be a whole number from 0 to 65535, got "${bad}".`),
        );
      }
    });

    it('reads AUDIT_RETENTION_DAYS: 365 by default, whole days or off; anything else is one clear line', () => {
      expect(loadConfig({}).auditRetentionDays).toBe(365);
      expect(loadConfig({ AUDIT_RETENTION_DAYS: '30' }).auditRetentionDays).toBe(30);
      expect(loadConfig({ AUDIT_RETENTION_DAYS: ' OFF ' }).auditRetentionDays).toBeNull();
      for (const bad of ['0', '-1', '1.5', '36501', 'forever', '30d']) {
        expect(() => loadConfig({ AUDIT_RETENTION_DAYS: bad })).toThrow(
          new ConfigError(
            `AUDIT_RETENTION_DAYS must be a whole number of days from 1 to 36500, or off to keep every event, got "${bad}".`,
          ),
        );
      }
    });

    // "production " (a trailing space a .env file or a YAML value keeps) ran as development: explorer,
    // introspection and "Did you mean" hints on, and ACCESS_KEY_SECRET not required.
    it('reads NODE_ENV with the spaces around it ignored, as every other setting', () => {
      for (const value of ['production ', ' production', 'production\n', '\tproduction']) {
        expect(() => loadConfig({ NODE_ENV: value })).toThrow(
          /ACCESS_KEY_SECRET .* is required when NODE_ENV=production/,
        );
        const config = loadConfig({ NODE_ENV: value, ACCESS_KEY_SECRET: randomBytes(32).toString('base64') });
        expect([config.env, config.explorerEnabled]).toEqual(['production', false]);
        expect(nodeEnvWarning({ NODE_ENV: value })).toBeNull();
      }
      expect(loadConfig({ NODE_ENV: ' test ' }).env).toBe('test');
      expect(nodeEnvWarning({ NODE_ENV: 'prod ' })).toMatch(/^NODE_ENV=prod is not "production"/);
    });

    it('takes TRUST_PROXY addresses, CIDRs and named ranges, and LOG_LEVEL in any letter case', () => {
      expect(loadConfig({ TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,fd00::/8 , loopback' }).trustProxy).toEqual([
        '10.0.0.1',
        '192.168.0.0/16',
        'fd00::/8',
        'loopback',
      ]);
      expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' })).toThrow(/TRUST_PROXY .* got "10\.0\.0\.0\/33"/);
      expect(loadConfig({ LOG_LEVEL: ' Warn ' }).logLevel).toBe('warn');
    });

    // A browser's Origin is scheme://host[:port] and is compared exactly: "crm.example.com" or a trailing slash
    // never matched, and the browser refused every call with no word from the service.
    it('takes CORS_ORIGINS as origins and refuses an entry no browser Origin can equal', () => {
      expect(loadConfig({ CORS_ORIGINS: 'https://crm.example.com, http://localhost:5173' }).corsOrigins).toEqual([
        'https://crm.example.com',
        'http://localhost:5173',
      ]);
      for (const bad of ['crm.example.com', 'https://crm.example.com/', 'https://crm.example.com/app', '*']) {
        expect(() => loadConfig({ CORS_ORIGINS: `https://ok.example, ${bad}` })).toThrow(
          new ConfigError(
            `CORS_ORIGINS holds origins as browsers send them, like https://crm.example.com (scheme, host and ` +
              `an optional port; no path, no trailing slash), got "${bad}".`,
          ),
        );
      }
    });

    // Hybrid mobile apps and browser extensions send an Origin of their own scheme (Capacitor on iOS:
    // capacitor://localhost, Chrome: chrome-extension://<id>), which the CORS plugin matched before the check
    // came: such an entry must still start the service, not stop it as "no browser Origin".
    it('takes an origin of a scheme of its own (an app or an extension), as browsers send it', () => {
      const origins = 'capacitor://localhost, chrome-extension://abcdefghijklmnop, tauri://localhost';
      expect(loadConfig({ CORS_ORIGINS: origins }).corsOrigins).toEqual([
        'capacitor://localhost',
        'chrome-extension://abcdefghijklmnop',
        'tauri://localhost',
      ]);
      for (const bad of [
        'capacitor://localhost/',
        'capacitor://localhost/app',
        'capacitor:localhost',
        'capacitor://',
      ]) {
        expect(() => loadConfig({ CORS_ORIGINS: bad })).toThrow(ConfigError);
      }
    });

    // Browsers send "Origin: null" from sandboxed frames and file:// pages, which any site can make: the entry
    // matched them before the check came. Still refused, in words that say why.
    it('refuses CORS_ORIGINS=null saying what sends it', () => {
      expect(() => loadConfig({ CORS_ORIGINS: 'https://ok.example, null' })).toThrow(
        new ConfigError(
          'CORS_ORIGINS may not hold "null": browsers send it from sandboxed frames and file:// pages, which any ' +
            'site can open; name the origins of your pages.',
        ),
      );
    });

    // NODE_ENV=prod (or staging) ran as development: explorer, introspection and "Did you mean" hints on,
    // without a word. Still accepted (platforms set their own names), but said at start.
    it('warns about a NODE_ENV that is neither production, development nor test', () => {
      expect(nodeEnvWarning({ NODE_ENV: 'prod' })).toBe(
        'NODE_ENV=prod is not "production": the service runs as development (explorer, introspection and ' +
          '"Did you mean" hints on). Set NODE_ENV=production for production.',
      );
      for (const fine of [undefined, '', 'production', 'development', 'test'])
        expect(nodeEnvWarning({ NODE_ENV: fine })).toBeNull();
    });

    // pg reads any scheme's host and port, so mysql://db/crm failed as "could not connect to PostgreSQL ...
    // ENOTFOUND" instead of saying the URL is not PostgreSQL's. The refusal names the scheme, never the URL.
    it('refuses a DATABASE_URL that is not a PostgreSQL connection string, without printing it', () => {
      for (const fine of ['postgres://u:p@db/crm', 'postgresql://db:5433/crm', 'socket:/var/run/postgresql?db=crm'])
        expect(loadConfig({ DATABASE_URL: fine }).databaseUrl).toBe(fine);
      expect(() => loadConfig({ DATABASE_URL: 'mysql://root:hunter2@db/crm' })).toThrow(
        new ConfigError(
          'DATABASE_URL must be a PostgreSQL connection string (postgres://user:password@host:5432/database), ' +
            'got a mysql: URL.',
        ),
      );
      expect(() => loadConfig({ DATABASE_URL: 'db.example:5432/crm' })).toThrow(/DATABASE_URL must be a PostgreSQL/);
    });

    // A password with a stray % stopped the start-up with TypeORM's URIError and its stack; a # or a port past
    // 65535 with pg's "Invalid URL", naming no setting.
    it('refuses a DATABASE_URL that pg or TypeORM cannot read, naming the setting and not the URL', () => {
      const unreadable = [
        'postgres://crm:s3cr3t%zz@127.0.0.1/crm',
        'postgres://crm:s3cr3t#1@127.0.0.1/crm',
        'postgres://crm:s3cr3t/1@127.0.0.1/crm',
        'postgres://crm:s3cr3t@127.0.0.1:99999/crm',
      ];
      for (const url of unreadable) {
        let refusal: unknown;
        try {
          loadConfig({ DATABASE_URL: url });
        } catch (error) {
          refusal = error;
        }
        expect(refusal).toBeInstanceOf(ConfigError);
        expect((refusal as Error).message).toMatch(/^DATABASE_URL cannot be read as a URL: percent-encode/);
        expect((refusal as Error).message).not.toContain('s3cr3t');
      }
      for (const fine of [
        'postgres://crm:p%40ss%25word@127.0.0.1:5432/crm',
        'postgres://crm@/crm?host=/var/run/postgresql',
        'postgresql://[::1]:5432/crm',
        'postgres://crm:p@ss@db/crm',
      ])
        expect(loadConfig({ DATABASE_URL: fine }).databaseUrl).toBe(fine);
    });

    it('refuses a headers timeout longer than the request timeout', () => {
      expect(() => loadConfig({ REQUEST_TIMEOUT_MS: '1000', HEADERS_TIMEOUT_MS: '2000' })).toThrow(
        /must not exceed REQUEST_TIMEOUT_MS/,
      );
    });

    it('reads LOG_REQUESTS and the load-shedding limits', () => {
      const config = loadConfig({
        LOG_REQUESTS: 'true',
        NODE_ENV: 'test',
        MAX_EVENT_LOOP_DELAY_MS: '0',
        MAX_HEAP_USED_MB: '512',
      });
      expect(config.logRequests).toBe(true);
      expect(config.loadShedding).toEqual({ maxEventLoopDelayMs: 0, maxHeapUsedBytes: 512 * 1024 * 1024 });
    });
  });
});
