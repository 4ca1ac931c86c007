#!/usr/bin/env node
// Paired CPU comparison of builds, all loaded AT ONCE (robust to the other core's noise), as the newest entries of
// docs/performance.md measured side by side. From a checkout with node_modules installed:
//   node docs/side-by-side/compare.js --query '{ users(first: 100) { edges { node { id email accessKey } } } }' \
//        [--rounds 8] [--seconds 2] [--connections 16] [--no-key] <main checkout> <branch checkout> <main checkout>
// Each argument is a built checkout (npm ci && npm run build done). The same dir may repeat (an A/A control).
// Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust; psql on PATH) and taskset (2+ cores).
// For each: a fresh database crm_cmp_<pid>_<i> on 127.0.0.1:5432 seeded with 1,000 users with keys (the admin's
// key goes in X-Access-Key unless --no-key), the server pinned to CPU 1 in production mode, autocannon on CPU 0.
// Prints, per round, each server's CPU us per request, and the median ratio of each server to the first.
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); if (i < 0) return dflt; const v = args[i + 1]; args.splice(i, 2); return v; };
const flag = (name) => { const i = args.indexOf(name); if (i < 0) return false; args.splice(i, 1); return true; };
const query = opt('--query', '{ __typename }');
const rounds = Number(opt('--rounds', 8));
const seconds = Number(opt('--seconds', 2));
const connections = Number(opt('--connections', 16));
const noKey = flag('--no-key');
const dirs = args.map((d) => path.resolve(d));
const secret = crypto.randomBytes(32).toString('base64');
const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const cpu = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / TICKS; };
const psql = (sql) => spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'test', '-qc', sql], { stdio: 'ignore' });
const autocannon = require(path.join(__dirname, '../../node_modules/autocannon'));
const servers = [];
const cleanup = () => { for (const s of servers) { try { s.proc.kill('SIGKILL'); } catch {} psql(`drop database if exists ${s.db}`); } };
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(1));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
(async () => {
  for (let i = 0; i < dirs.length; i++) {
    const db = `crm_cmp_${process.pid}_${i}`;
    psql(`drop database if exists ${db}`);
    psql(`create database ${db}`);
    const url = `postgres://postgres@127.0.0.1:5432/${db}`;
    const out = execFileSync('node', [path.join(__dirname, 'seed-page.js'), dirs[i], url, secret]).toString().trim().split('\n').pop();
    const { adminKey } = JSON.parse(out);
    const port = 4800 + (process.pid % 100) * 5 + i;
    const proc = spawn('taskset', ['-c', '1', 'node', path.join(dirs[i], 'dist/src/main.js')], {
      env: { ...process.env, DATABASE_URL: url, ACCESS_KEY_SECRET: secret, NODE_ENV: 'production', PORT: String(port), LOG_LEVEL: 'warn', LOG_REQUESTS: 'false' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    servers.push({ dir: dirs[i], db, port, proc, adminKey });
  }
  for (const s of servers) {
    for (let t = 0; t < 200; t++) { try { const r = await fetch(`http://127.0.0.1:${s.port}/readyz`); if (r.ok) break; } catch {} await new Promise((r) => setTimeout(r, 200)); }
  }
  const body = JSON.stringify({ query });
  const load = (s, secs) => new Promise((resolve, reject) => autocannon({
    url: `http://127.0.0.1:${s.port}/graphql`, method: 'POST', connections, duration: secs, body,
    headers: { 'content-type': 'application/json', ...(noKey ? {} : { 'x-access-key': s.adminKey }) },
  }, (err, res) => (err ? reject(err) : resolve(res))));
  // The load generators run in this process: pin it to CPU 0.
  spawnSync('taskset', ['-pc', '0', String(process.pid)], { stdio: 'ignore' });
  const check = await (await fetch(`http://127.0.0.1:${servers[0].port}/graphql`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...(noKey ? {} : { 'x-access-key': servers[0].adminKey }) } })).text();
  console.log('answer of the first server (first 200 chars):', check.slice(0, 200));
  await Promise.all(servers.map((s) => load(s, 6))); // warm-up
  const ratios = servers.map(() => []);
  const usAll = servers.map(() => []);
  for (let r = 0; r < rounds; r++) {
    const before = servers.map((s) => cpu(s.proc.pid));
    const results = await Promise.all(servers.map((s) => load(s, seconds)));
    const after = servers.map((s) => cpu(s.proc.pid));
    const us = servers.map((s, i) => ((after[i] - before[i]) * 1e6) / Math.max(1, results[i].requests.total));
    const bad = results.map((x) => x.non2xx + x.errors);
    us.forEach((u, i) => { usAll[i].push(u); ratios[i].push(u / us[0]); });
    console.log(`round ${r + 1}: ` + us.map((u, i) => `${path.basename(servers[i].dir)} ${u.toFixed(1)} us (${results[i].requests.total} req${bad[i] ? `, ${bad[i]} non-2xx/errors` : ''})`).join(' | '));
  }
  console.log('median CPU us/request and median ratio to the first:');
  servers.forEach((s, i) => console.log(`  ${i}: ${s.dir}: ${median(usAll[i]).toFixed(1)} us, ratio ${median(ratios[i]).toFixed(3)} (rounds: ${ratios[i].map((x) => x.toFixed(3)).join(' ')})`));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
