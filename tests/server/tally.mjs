// tally.mjs — the bookkeeping every Node test script of the server shares (tests/server/*.mjs,
// tests/clients/*.mjs): check(cond, what) counts a pass or prints "FAIL what"; test(name, fn[, ms])
// runs one async case, a throw (or, with ms, no answer within ms milliseconds) counting as one
// failure; report() prints the "N passed, M failed" line tests/test_server.sh adds up and exits
// non-zero when anything failed.
let passed = 0, failed = 0;

export function check(cond, what) {
  if (cond) passed++;
  else { failed++; console.error(`FAIL ${what}`); }
}

export async function test(name, fn, ms = 0) {
  let timer;
  const limit = ms > 0 ? new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms / 1000} s`)), ms); }) : null;
  try { await (limit ? Promise.race([fn(), limit]) : fn()); } catch (e) { failed++; console.error(`FAIL ${name}: ${e.stack || e}`); }
  clearTimeout(timer);
}

export function report() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
