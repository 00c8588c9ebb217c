// jsonschemabench.mjs — the schema compiler over a corpus of real-world schemas (JSONSchemaBench's
// layout: one folder per set, one schema per .json file), judged by ajv.
//
// For each set, `test_grammar --survey N` compiles every schema and walks the automaton to N random
// complete answers (a dead end — a prefix it took but can neither extend nor complete — is
// reported); every answer must then validate with ajv (draft-04 schemas with ajv-draft-04, draft-06/07
// with Ajv, 2019-09/2020-12 with Ajv2020; ajv-formats). Prints per set: schemas, coverage (compiled,
// no dead end, every answer valid), invalid answers, dead ends, rejections; then rejections by
// keyword, and lists the invalid / dead-end schemas.
//
// usage: node jsonschemabench.mjs --bin PATH/test_grammar --corpus DIR [--sets A,B] [--n N]
//        [--jobs J] [--limit K] [--expect-clean] [--min-coverage P]
//   --limit K: the first K schemas of each set (sorted by name); --expect-clean: exit 1 when any
//   answer is invalid, any schema reaches a dead end, crashes or times out (the CI gate);
//   --min-coverage P: exit 1 when the coverage over all sets is under P percent.
// With --server URL [--key K] [--max-tokens M] instead of --bin, each schema goes to a running
// `lfm2c serve` (a tiny fixture model does) as one /v1/chat/completions request with
// response_format json_schema strict (seeded, temperature 1): a 400 before generation is a
// rejection, a 4xx/5xx after it started or an unparsable answer a dead end, an answer cut by
// max_tokens ("length") is counted apart, a finished answer is judged by ajv.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import Ajv2020 from 'ajv/dist/2020.js';
import AjvDraft04 from 'ajv-draft-04';
import addFormats from 'ajv-formats';

const args = { n: 3, jobs: 2, limit: 0, sets: '', expectClean: false, minCoverage: 0, server: '', key: '', maxTokens: 512 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--bin') args.bin = process.argv[++i];
  else if (a === '--corpus') args.corpus = process.argv[++i];
  else if (a === '--sets') args.sets = process.argv[++i];
  else if (a === '--n') args.n = +process.argv[++i];
  else if (a === '--jobs') args.jobs = +process.argv[++i];
  else if (a === '--limit') args.limit = +process.argv[++i];
  else if (a === '--expect-clean') args.expectClean = true;
  else if (a === '--server') args.server = process.argv[++i];
  else if (a === '--key') args.key = process.argv[++i];
  else if (a === '--max-tokens') args.maxTokens = +process.argv[++i];
  else if (a === '--min-coverage') args.minCoverage = +process.argv[++i];
  else { console.error(`unknown argument ${a}`); process.exit(2); }
}
if ((!args.bin && !args.server) || !args.corpus) { console.error('usage: --bin TEST_GRAMMAR | --server URL --corpus DIR [...]'); process.exit(2); }

const CHUNK = 20, CHUNK_TIMEOUT_MS = 120000;

// One test_grammar --survey run over a chunk of files; resolves to its lines. When the run dies
// (a crash, or past CHUNK_TIMEOUT_MS), the schemas it did not answer are run one by one, so the
// one that failed is named (CRASH or TIMEOUT) and the others are still judged.
function survey(files, outDir, alone = false) {
  return new Promise(resolve => {
    const p = spawn(args.bin, ['--survey', String(args.n), outDir, ...files], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', timedOut = false;
    p.stdout.on('data', d => { out += d; });
    p.stderr.on('data', () => {});
    const timer = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, alone ? CHUNK_TIMEOUT_MS / 4 : CHUNK_TIMEOUT_MS);
    p.on('close', async (code, signal) => {
      clearTimeout(timer);
      const lines = out.split('\n').filter(l => l.includes('\t'));
      const seen = new Set(lines.map(l => l.split('\t')[0]));
      const missing = files.filter(f => !seen.has(f.split('/').pop().slice(0, -5)));
      if (alone || !missing.length) {
        for (const f of missing) lines.push(`${f.split('/').pop().slice(0, -5)}\t${timedOut ? 'TIMEOUT' : 'CRASH'}\t${signal || code}\t0`);
        resolve(lines);
        return;
      }
      for (const f of missing) lines.push(...await survey([f], outDir, true));
      resolve(lines);
    });
  });
}

// One schema through the server, written like --survey's lines (the answer in OUTDIR/name.jsonl).
async function viaServer(file, outDir) {
  const name = file.split('/').pop().slice(0, -5);
  let schema;
  try { schema = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { return [`${name}\tREJECT\tnot JSON\t0`]; }
  const body = { messages: [{ role: 'user', content: 'Answer with a JSON value for this schema.' }], max_tokens: args.maxTokens,
    temperature: 1, seed: 7, response_format: { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema } } };
  const t0 = Date.now();
  let r, text;
  try {
    r = await fetch(`${args.server}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', ...(args.key ? { Authorization: `Bearer ${args.key}` } : {}) } });
    text = await r.text();
  } catch (e) { return [`${name}\tCRASH\t${e.message}\t0`]; }
  const ms = Date.now() - t0;
  let j = null;
  try { j = JSON.parse(text); } catch { /* below */ }
  if (r.status === 400 && j && j.error && j.error.code !== 'unsatisfiable_request')
    return [`${name}\tREJECT\t${String(j.error.message).replace(/[\t\n]/g, ' ')}\t${ms}`];
  if (r.status !== 200 || !j || !j.choices) return [`${name}\tDEADEND\tHTTP ${r.status} ${text.slice(0, 200).replace(/[\t\n]/g, ' ')}\t${ms}`];
  const c = j.choices[0];
  if (c.finish_reason === 'length') return [`${name}\tCUT\t${args.maxTokens}\t${ms}`];
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(outDir, `${name}.jsonl`), String(c.message.content).replace(/\n/g, ' ') + '\n');
  return [`${name}\tOK\t1\t${ms}`];
}

async function pool(tasks, jobs) {
  const results = [];
  let next = 0;
  async function worker() { while (next < tasks.length) { const i = next++; results[i] = await tasks[i](); } }
  await Promise.all(Array.from({ length: jobs }, worker));
  return results;
}

// Draft-04's `id` (a string) in a schema labelled as a later draft: an annotation there, which
// Ajv refuses by name.
function withoutDraft4Ids(v) {
  if (Array.isArray(v)) return v.map(withoutDraft4Ids);
  if (!v || typeof v !== 'object') return v;
  const o = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'id' && typeof x === 'string') continue;
    o[k] = ['enum', 'const', 'default', 'examples'].includes(k) ? x : withoutDraft4Ids(x);
  }
  return o;
}

// The validator for a schema's draft ($schema, else the keywords it uses).
function validatorFor(schema) {
  const id = typeof schema.$schema === 'string' ? schema.$schema : '';
  // unicodeRegExp off: patterns written for plain JavaScript RegExp (`\:`) compile as they do there
  const opts = { logger: false, strict: false, allErrors: false, multipleOfPrecision: 9, validateSchema: false, unicodeRegExp: false };
  let ajv;
  if (/draft-04/.test(id)) ajv = new AjvDraft04(opts);
  else if (/2019-09|2020-12/.test(id) || /"prefixItems"|"\$dynamicRef"|"dependentRequired"/.test(JSON.stringify(schema)))
    ajv = new Ajv2020(opts);
  else ajv = new Ajv(opts);
  addFormats(ajv);
  let copy = { ...schema };
  if (!(ajv instanceof AjvDraft04)) { delete copy.$schema; copy = withoutDraft4Ids(copy); }
  return ajv.compile(copy);
}

// The keyword a rejection names (the first quoted word), else the message's first words.
function keywordOf(msg) {
  const m = /'([^']{1,40})'/.exec(msg) || /"([^"]{1,40})"/.exec(msg);
  return m ? m[1] : msg.split(' ').slice(0, 4).join(' ');
}

const sets = readdirSync(args.corpus, { withFileTypes: true }).filter(d => d.isDirectory()).map(d => d.name).sort()
  .filter(s => !args.sets || args.sets.split(',').includes(s));
const work = mkdtempSync(join(tmpdir(), 'jsb-'));
const table = [], byKeyword = new Map(), bad = [];
let totalInvalid = 0, totalDead = 0;
for (const set of sets) {
  let files = readdirSync(join(args.corpus, set)).filter(f => f.endsWith('.json')).sort();
  if (args.limit) files = files.slice(0, args.limit);
  const paths = files.map(f => join(args.corpus, set, f));
  const outDir = join(work, set);
  rmSync(outDir, { recursive: true, force: true });
  readdirSync(work); // keep the folder
  await import('node:fs').then(fs => fs.mkdirSync(outDir, { recursive: true }));
  const chunks = [];
  for (let i = 0; i < paths.length; i += CHUNK) chunks.push(paths.slice(i, i + CHUNK));
  const lines = args.server ? (await pool(paths.map(f => () => viaServer(f, outDir)), args.jobs)).flat()
                            : (await pool(chunks.map(c => () => survey(c, outDir)), args.jobs)).flat();
  const st = { set, n: files.length, ok: 0, invalidAnswers: 0, invalidSchemas: 0, dead: 0, rejected: 0, timeout: 0, unchecked: 0, cut: 0 };
  for (const line of lines) {
    const [name, status, detail] = line.split('\t');
    if (status === 'REJECT') {
      st.rejected++;
      const k = keywordOf(detail);
      const e = byKeyword.get(k) || { n: 0, ex: [] };
      e.n++;
      if (e.ex.length < 3) e.ex.push(`${set}/${name}`);
      byKeyword.set(k, e);
      continue;
    }
    if (status === 'DEADEND') { st.dead++; bad.push(`DEADEND ${set}/${name}: ${detail}`); continue; }
    if (status === 'CUT') { st.cut++; continue; }
    if (status !== 'OK') { st.timeout++; bad.push(`${status} ${set}/${name}`); continue; }
    const schema = JSON.parse(readFileSync(join(args.corpus, set, `${name}.json`), 'utf8'));
    let validate;
    try { validate = validatorFor(schema); } catch (e) { st.unchecked++; continue; }
    const out = join(outDir, `${name}.jsonl`);
    const answers = existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(l => l.length) : [];
    let wrong = 0;
    for (const a of answers) {
      let v, okv = false;
      try { v = JSON.parse(a); okv = validate(v); } catch { okv = false; }
      if (!okv) {
        wrong++;
        if (wrong === 1) bad.push(`INVALID ${set}/${name}: ${a.slice(0, 300)}\n    ${JSON.stringify(validate.errors || 'not JSON').slice(0, 300)}`);
      }
    }
    if (!answers.length) { st.unchecked++; continue; }
    st.invalidAnswers += wrong;
    if (wrong) st.invalidSchemas++;
    else st.ok++;
  }
  totalInvalid += st.invalidAnswers;
  totalDead += st.dead;
  table.push(st);
  console.log(`${set}: ${st.n} schemas, coverage ${(100 * st.ok / Math.max(st.n, 1)).toFixed(1)}%, ` +
    `invalid answers ${st.invalidAnswers} (${st.invalidSchemas} schemas), dead ends ${st.dead}, rejected ${st.rejected}, ` +
    `timeouts/crashes ${st.timeout}, unchecked (ajv cannot compile) ${st.unchecked}` + (args.server ? `, cut by max_tokens ${st.cut}` : ''));
}
rmSync(work, { recursive: true, force: true });
console.log('\n| set | n | coverage | invalid answers | dead ends | rejected | timeouts | unchecked |' + (args.server ? ' cut |' : '') +
  '\n|---|---:|---:|---:|---:|---:|---:|---:|' + (args.server ? '---:|' : ''));
for (const s of table)
  console.log(`| ${s.set} | ${s.n} | ${(100 * s.ok / Math.max(s.n, 1)).toFixed(1)}% | ${s.invalidAnswers} | ${s.dead} | ${s.rejected} | ${s.timeout} | ${s.unchecked} |` +
    (args.server ? ` ${s.cut} |` : ''));
console.log('\nrejections by keyword:');
for (const [k, v] of [...byKeyword].sort((a, b) => b[1].n - a[1].n).slice(0, 40)) console.log(`  ${v.n}\t${k}\t(${v.ex.join(' ')})`);
if (bad.length) console.log('\n' + bad.join('\n'));
const all = table.reduce((a, s) => ({ n: a.n + s.n, ok: a.ok + s.ok, bad: a.bad + s.timeout }), { n: 0, ok: 0, bad: 0 });
const coverage = 100 * all.ok / Math.max(all.n, 1);
console.log(`\nschemas: ${all.n}, coverage ${coverage.toFixed(1)}%, invalid answers: ${totalInvalid}, dead ends: ${totalDead}, timeouts/crashes: ${all.bad}`);
let failed = args.expectClean && (totalInvalid || totalDead || all.bad);
if (coverage < args.minCoverage) { console.log(`FAIL coverage ${coverage.toFixed(1)}% is under ${args.minCoverage}%`); failed = true; }
process.exit(failed ? 1 : 0);
