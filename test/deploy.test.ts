import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { loadConfig } from '../src/config';

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
    ACCESS_KEY_SECRET: env.ACCESS_KEY_SECRET.startsWith('${ACCESS_KEY_SECRET:?') ? randomBytes(32).toString('base64') : 'unset',
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
