// node docs/side-by-side/summarize-profile.js <file.cpuprofile> <requests> [top]
// Self time per function (name @ file:line), in us per request, idle excluded; plus inclusive for chosen names.
const fs = require('fs');
const [file, requests, top = 45, windowSeconds] = process.argv.slice(2);
const p = JSON.parse(fs.readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
// Only the last windowSeconds of the profile (the measured load, not start-up), when given.
const times = [];
let t = p.startTime;
for (const d of p.timeDeltas) times.push((t += d));
const from = windowSeconds ? p.endTime - Number(windowSeconds) * 1e6 : -Infinity;
const selfCount = new Map();
let kept = 0;
p.samples.forEach((s, i) => {
  if (times[i] < from) return;
  kept++;
  selfCount.set(s, (selfCount.get(s) ?? 0) + 1);
});
const dt = ((windowSeconds ? Number(windowSeconds) * 1e6 : p.endTime - p.startTime)) / kept; // us per sample
const label = (n) => {
  const f = n.callFrame;
  const url = (f.url || '').replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, '');
  return `${f.functionName || '(anon)'} ${url}:${f.lineNumber + 1}`;
};
const self = new Map();
const incl = new Map();
let busy = 0;
for (const [id, count] of selfCount) {
  const n = byId.get(id);
  const l = label(n);
  if (n.callFrame.functionName === '(idle)') continue;
  busy += count;
  self.set(l, (self.get(l) ?? 0) + count);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const cl = label(byId.get(cur));
    if (seen.has(cl)) continue;
    seen.add(cl);
    incl.set(cl, (incl.get(cl) ?? 0) + count);
  }
}
const per = (c) => ((c * dt) / Number(requests)).toFixed(2);
console.log(`busy ${per(busy)} us/request over ${requests} requests (sample ${dt.toFixed(0)} us)`);
console.log('--- self');
for (const [l, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(per(c).padStart(7), l);
console.log('--- inclusive');
for (const [l, c] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(top) * 2)) console.log(per(c).padStart(7), l);
