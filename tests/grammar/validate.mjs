// validate.mjs OUTDIR SCHEMADIR... — the oracle: every line of OUTDIR/<name>.jsonl (outputs the
// C generator produced under the schema SCHEMADIR/<name>.json) must JSON.parse and validate
// with ajv (+ ajv-formats). Prints failures and "N passed, N failed".
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readdirSync, readFileSync, existsSync } from 'node:fs';

const [outDir, ...schemaDirs] = process.argv.slice(2);
let passed = 0, failed = 0;
for (const dir of schemaDirs) {
  for (const file of readdirSync(dir).filter(f => f.endsWith('.json')).sort()) {
    const name = file.slice(0, -5);
    const schema = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8'));
    delete schema.$schema; // draft-07 and 2020-12 documents alike
    // multipleOf: exact decimal arithmetic, not float division (0.07 / 0.01 != 7 in doubles)
    const ajv = new Ajv2020({ strict: false, allErrors: true, multipleOfPrecision: 9 });
    addFormats(ajv);
    let validate;
    try { validate = ajv.compile(schema); } catch (e) { console.log(`FAIL ajv compile ${name}: ${e.message}`); failed++; continue; }
    const path = `${outDir}/${name}.jsonl`;
    if (!existsSync(path)) { console.log(`FAIL ${name}: no outputs`); failed++; continue; }
    for (const line of readFileSync(path, 'utf8').split('\n').filter(l => l.length)) {
      let v;
      try { v = JSON.parse(line); } catch (e) { console.log(`FAIL ${name}: not JSON: ${line}`); failed++; continue; }
      if (validate(v)) passed++;
      else { failed++; console.log(`FAIL ${name}: ${line}\n  ${ajv.errorsText(validate.errors)}`); }
    }
  }
}
// the negative cases must really be invalid (so the automaton's refusals mean something)
if (existsSync('negative.jsonl')) {
  for (const line of readFileSync('negative.jsonl', 'utf8').split('\n').filter(l => l.length)) {
    const { schema: name, instance } = JSON.parse(line);
    const schema = JSON.parse(readFileSync(`schemas/${name}.json`, 'utf8'));
    delete schema.$schema;
    const ajv = new Ajv2020({ strict: false, multipleOfPrecision: 9 });
    addFormats(ajv);
    if (ajv.validate(schema, instance)) { failed++; console.log(`FAIL negative case valid for ajv: ${line}`); }
    else passed++;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
