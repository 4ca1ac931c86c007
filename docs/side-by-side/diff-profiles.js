// node docs/side-by-side/diff-profiles.js a.txt b.txt : self-time differences (a - b) by label, from summarize-profile outputs
const fs = require('fs');
const read = (f, section) => {
  const m = new Map();
  let on = false;
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    if (line.startsWith('--- ')) { on = line === `--- ${section}`; continue; }
    if (!on) continue;
    const mm = /^\s*([\d.]+) (.*)$/.exec(line);
    if (mm) m.set(mm[2], Number(mm[1]));
  }
  return m;
};
const section = process.argv[4] || 'self';
const a = read(process.argv[2], section), b = read(process.argv[3], section);
const keys = new Set([...a.keys(), ...b.keys()]);
const rows = [...keys].map((k) => [k, (a.get(k) ?? 0) - (b.get(k) ?? 0), a.get(k) ?? 0, b.get(k) ?? 0]);
rows.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
for (const [k, d, x, y] of rows.slice(0, Number(process.argv[5] || 60))) console.log(d.toFixed(2).padStart(7), x.toFixed(2).padStart(6), y.toFixed(2).padStart(6), k);
