// e2e.mjs — drives a running `lfm2c serve` with the official OpenAI Node.js SDK.
// usage: node e2e.mjs BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:PORT)
// The fixture models have random weights: outputs are noise, so the checks are about shapes,
// determinism, constraints and the protocol, never about what the text says.
import OpenAI from 'openai';
import { check, test, report } from './tally.mjs';

const [base, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120000 });
const model = 'fixture';
const user = (content) => [{ role: 'user', content }];

// A validator for the JSON-schema subset the server enforces.
function validates(v, s) {
  if (s.enum) return s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v));
  if ('const' in s) return JSON.stringify(s.const) === JSON.stringify(v);
  const types = s.type ? [].concat(s.type) : null;
  const typeOf = (x) => x === null ? 'null' : Array.isArray(x) ? 'array' : Number.isInteger(x) ? 'integer' : typeof x;
  if (types) {
    const t = typeOf(v);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return false;
  }
  if (typeOf(v) === 'object' && v !== null) {
    for (const r of s.required || []) if (!(r in v)) return false;
    for (const [k, x] of Object.entries(v)) {
      if (s.properties && k in s.properties) { if (!validates(x, s.properties[k])) return false; }
      else if (s.additionalProperties === false) return false;
    }
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) return false;
    if (s.maxItems !== undefined && v.length > s.maxItems) return false;
    if (s.items && !v.every((x) => validates(x, s.items))) return false;
  }
  if (typeof v === 'string') {
    const n = [...v].length;
    if (s.minLength !== undefined && n < s.minLength) return false;
    if (s.maxLength !== undefined && n > s.maxLength) return false;
  }
  if (typeof v === 'number' && s.minimum !== undefined && v < s.minimum) return false;
  return true;
}

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { location: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] }, days: { type: 'integer', minimum: 0 } },
      required: ['location'],
    },
  },
};
const timeTool = {
  type: 'function',
  function: { name: 'get_time', description: 'Time in a zone', parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 8 } }, required: ['zone'] } },
};

await test('models', async () => {
  const list = await client.models.list();
  check(list.data.length === 1 && list.data[0].id === 'fixture', 'models.list gives the alias');
});

let greedy;
await test('plain chat', async () => {
  const r = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 12, temperature: 0 });
  const c = r.choices[0];
  check(r.object === 'chat.completion' && c.message.role === 'assistant', 'chat shape');
  check(typeof c.message.content === 'string', 'content is a string');
  check(['stop', 'length'].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  check(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 12, `usage.completion_tokens ${r.usage.completion_tokens}`);
  check(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, 'usage total');
  const again = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 12, temperature: 0 });
  check(again.choices[0].message.content === c.message.content, 'temperature 0 is deterministic');
  check(again.usage.prompt_tokens_details.cached_tokens > 0, 'repeat prompt reuses the cached prefix');
  greedy = c.message.content;
});

await test('streaming chat', async () => {
  const stream = await client.chat.completions.create({
    model, messages: user('Hello there'), max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, role = null, n = 0;
  for await (const ch of stream) {
    n++;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(n >= 3, 'several chunks');
  check(role === 'assistant', 'first delta has the role');
  check(text === greedy, `streamed text equals the plain answer (${JSON.stringify(text)} vs ${JSON.stringify(greedy)})`);
  check(finish === 'stop' || finish === 'length', 'stream finish_reason');
  check(usage && usage.completion_tokens > 0, 'include_usage sends a usage chunk');
});

await test('sampling options', async () => {
  const a = await client.chat.completions.create({ model, messages: user('Tell me'), max_tokens: 10, temperature: 1.2, top_p: 0.9, seed: 42 });
  const b = await client.chat.completions.create({ model, messages: user('Tell me'), max_tokens: 10, temperature: 1.2, top_p: 0.9, seed: 42 });
  check(a.choices[0].message.content === b.choices[0].message.content, 'same seed, same text');
  const c = await client.chat.completions.create({
    model, messages: user('Tell me'), max_tokens: 10, temperature: 0.8, top_k: 5, min_p: 0.05,
    presence_penalty: 0.5, frequency_penalty: 0.5, repetition_penalty: 1.1, seed: 1,
  });
  check(typeof c.choices[0].message.content === 'string', 'penalties accepted');
});

await test('stop strings', async () => {
  if (!greedy || greedy.length < 6) { check(true, 'skip'); return; }
  const stop = greedy.slice(3, 6);
  const idx = greedy.indexOf(stop);
  const r = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 12, temperature: 0, stop: [stop] });
  check(r.choices[0].message.content === greedy.slice(0, idx), `output cut before the stop string ${JSON.stringify(stop)}`);
  check(r.choices[0].finish_reason === 'stop', 'stop finish_reason');
});

await test('logit_bias', async () => {
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ content: ' the' }) })).json();
  check(tok.tokens.length === 1, '/tokenize gives one token for " the"');
  const r = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 4, temperature: 0, logit_bias: { [tok.tokens[0]]: 100 } });
  check(r.choices[0].message.content === ' the the the the', `logit_bias +100 forces the token (${JSON.stringify(r.choices[0].message.content)})`);
  const det = await (await fetch(`${base}/detokenize`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ tokens: tok.tokens }) })).json();
  check(det.content === ' the', '/detokenize round trip');
});

await test('logprobs', async () => {
  const r = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
  const lp = r.choices[0].logprobs.content;
  check(lp.length === r.usage.completion_tokens, 'one logprob entry per token');
  check(lp.every((e) => e.logprob <= 0 && e.top_logprobs.length === 3 && e.top_logprobs[0].logprob >= e.top_logprobs[2].logprob), 'top_logprobs sorted');
  check(lp.every((e) => Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4), 'greedy picks the top token');
});

await test('tool call (named)', async () => {
  const r = await client.chat.completions.create({
    model, messages: user('Weather in Paris?'), tools: [weatherTool, timeTool], max_tokens: 64, temperature: 0,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const c = r.choices[0];
  check(c.finish_reason === 'tool_calls', `finish_reason tool_calls (got ${c.finish_reason})`);
  const calls = c.message.tool_calls || [];
  check(calls.length === 1 && calls[0].type === 'function' && calls[0].function.name === 'get_weather', 'one get_weather call');
  const args = JSON.parse(calls[0]?.function.arguments || 'null');
  check(args && validates(args, weatherTool.function.parameters), `arguments validate: ${calls[0]?.function.arguments}`);
  check(typeof calls[0]?.id === 'string' && calls[0].id.length > 4, 'call id');
});

await test('tool calls (required, parallel)', async () => {
  let maxCalls = 0;
  for (let seed = 1; seed <= 12 && maxCalls < 2; seed++) {
    const r = await client.chat.completions.create({
      model, messages: user('Weather and time in Paris?'), tools: [weatherTool, timeTool], tool_choice: 'required',
      max_tokens: 96, temperature: 1.0, seed,
    });
    const calls = r.choices[0].message.tool_calls || [];
    check(r.choices[0].finish_reason === 'tool_calls' && calls.length >= 1, `required gives tool calls (seed ${seed})`);
    for (const call of calls) {
      const def = [weatherTool, timeTool].find((t) => t.function.name === call.function.name);
      check(def && validates(JSON.parse(call.function.arguments), def.function.parameters), `call validates: ${call.function.name}(${call.function.arguments})`);
    }
    maxCalls = Math.max(maxCalls, calls.length);
  }
  check(maxCalls >= 2, `some answer holds parallel calls (max ${maxCalls})`);
  const single = await client.chat.completions.create({
    model, messages: user('Weather?'), tools: [weatherTool, timeTool], tool_choice: 'required', parallel_tool_calls: false,
    max_tokens: 96, temperature: 1.0, seed: 3,
  });
  check((single.choices[0].message.tool_calls || []).length === 1, 'parallel_tool_calls false gives one call');
});

await test('tool result round trip', async () => {
  const messages = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Weather and time in Paris?' },
    { role: 'assistant', content: null, tool_calls: [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris","unit":"c"}' } },
      { id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '{"zone":"CET"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 18}' },
    { role: 'tool', tool_call_id: 'call_2', content: '{"time": "12:00"}' },
  ];
  const r = await client.chat.completions.create({ model, messages, tools: [weatherTool, timeTool], tool_choice: 'none', max_tokens: 8, temperature: 0 });
  check(typeof r.choices[0].message.content === 'string' && !r.choices[0].message.tool_calls, 'answer after tool results');
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: 'get_weather(location="Paris", unit="c")' }) })).json();
  check(r.usage.prompt_tokens > tok.tokens.length + 20, 'the calls and results are in the prompt');
});

await test('tool call streaming', async () => {
  const stream = await client.chat.completions.create({
    model, messages: user('Weather in Paris?'), tools: [weatherTool], max_tokens: 64, temperature: 0, stream: true,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const calls = [];
  let finish = null, content = '';
  for await (const ch of stream) {
    for (const c of ch.choices) {
      if (c.delta.content) content += c.delta.content;
      for (const tc of c.delta.tool_calls || []) {
        calls[tc.index] ??= { name: '', arguments: '' };
        if (tc.function?.name) calls[tc.index].name += tc.function.name;
        if (tc.function?.arguments) calls[tc.index].arguments += tc.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(finish === 'tool_calls', `stream finish tool_calls (${finish})`);
  check(calls.length === 1 && calls[0].name === 'get_weather' && validates(JSON.parse(calls[0].arguments), weatherTool.function.parameters), 'streamed call');
  check(!content.includes('<|tool_call'), 'no markers in streamed content');
});

const personSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 20 },
    age: { type: 'integer', minimum: 0 },
    email: { type: ['string', 'null'], maxLength: 30 },
    tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 3 },
    address: { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, zip: { type: 'number' } }, required: ['city'], additionalProperties: false },
    active: { type: 'boolean' },
  },
  required: ['name', 'age', 'tags', 'address'],
  additionalProperties: false,
};
await test('json_schema', async () => {
  for (const [max_tokens, temperature, seed] of [[200, 0, 0], [200, 1, 7], [25, 1, 3], [12, 0, 0]]) {
    const r = await client.chat.completions.create({
      model, messages: user('Describe a person as JSON'), max_tokens, temperature, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: personSchema, strict: true } },
    });
    const text = r.choices[0].message.content, finish = r.choices[0].finish_reason;
    // max_tokens is a hard bound: an answer cut by it says "length" and is what was generated
    check(r.usage.completion_tokens <= max_tokens, `json_schema within max_tokens (${r.usage.completion_tokens} > ${max_tokens})`);
    if (max_tokens >= 200) check(finish === 'stop', `json_schema finishes within ${max_tokens} tokens (${finish}): ${text}`);
    if (finish === 'length') { check(r.usage.completion_tokens === max_tokens, 'length means the budget was used'); continue; }
    let v = null;
    try { v = JSON.parse(text); } catch (e) { /* checked below */ }
    check(v !== null, `json_schema output parses (max_tokens ${max_tokens}): ${text}`);
    check(v !== null && validates(v, personSchema), `json_schema output validates (max_tokens ${max_tokens}): ${text}`);
  }
  const s = await client.chat.completions.create({
    model, messages: user('JSON please'), max_tokens: 300, temperature: 0, stream: true,
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: personSchema } },
  });
  let text = '';
  for await (const ch of s) for (const c of ch.choices) text += c.delta.content || '';
  check(validates(JSON.parse(text), personSchema), `streamed json_schema validates: ${text}`);
});

await test('json_object', async () => {
  const r = await client.chat.completions.create({ model, messages: user('JSON'), max_tokens: 30, temperature: 0.7, seed: 5, response_format: { type: 'json_object' } });
  const v = JSON.parse(r.choices[0].message.content);
  check(v !== null && typeof v === 'object' && !Array.isArray(v), `json_object gives an object: ${r.choices[0].message.content}`);
});

// vLLM's structured outputs through the SDK's own calls, as a vLLM client sends them (the SDK
// passes body fields it does not know through, as Python's extra_body does)
await test('vLLM structured outputs (structured_outputs, guided_*)', async () => {
  const choices = ['yes', 'no', 'maybe so'];
  const re = /^[a-z]{2,5}-\d{3}$/;
  for (const seed of [1, 2]) {
    const a = await client.chat.completions.create({ model, messages: user('?'), temperature: 1, seed, max_tokens: 20,
      structured_outputs: { choice: choices } });
    check(choices.includes(a.choices[0].message.content) && a.choices[0].finish_reason === 'stop', `choice: ${a.choices[0].message.content}`);
    const b = await client.completions.create({ model, prompt: 'id:', temperature: 1, seed, max_tokens: 20,
      guided_regex: '[a-z]{2,5}-\\d{3}' });
    check(re.test(b.choices[0].text) && b.choices[0].finish_reason === 'stop', `regex: ${b.choices[0].text}`);
    const c = await client.chat.completions.create({ model, messages: user('JSON'), temperature: 1, seed, max_tokens: 200,
      structured_outputs: { json: personSchema } });
    check(validates(JSON.parse(c.choices[0].message.content), personSchema), `json: ${c.choices[0].message.content}`);
  }
  const stream = await client.chat.completions.create({ model, messages: user('?'), temperature: 1, seed: 3,
    max_tokens: 20, stream: true, guided_choice: choices });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content || '';
  check(choices.includes(text), `streamed choice: ${text}`);
  try {
    await client.chat.completions.create({ model, messages: user('?'), structured_outputs: { grammar: 'root ::= "a"' } });
    check(false, 'a context-free grammar is refused');
  } catch (e) {
    check(e.status === 400 && e.param === 'structured_outputs.grammar', `grammar -> 400 naming it: ${e.status} ${e.param}`);
  }
});

await test('completions', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  check(r.object === 'text_completion' && typeof r.choices[0].text === 'string', 'completion shape');
  check(r.usage.completion_tokens === 8 && r.choices[0].finish_reason === 'length', 'completion length');
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ content: 'Once upon a time', add_special: true }) })).json();
  const r2 = await client.completions.create({ model, prompt: tok.tokens, max_tokens: 8, temperature: 0 });
  check(r2.choices[0].text === r.choices[0].text, 'token-array prompt = string prompt');
  const s = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
  let text = '';
  for await (const ch of s) text += ch.choices[0]?.text || '';
  check(text === r.choices[0].text, 'streamed completion equals plain');
  const l = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 2 });
  const lp = l.choices[0].logprobs;
  check(lp.tokens.length === 4 && lp.token_logprobs.length === 4 && lp.top_logprobs.length === 4 && lp.text_offset[0] === 0,
    'legacy completion logprobs arrays');
  check(lp.tokens.join('') === l.choices[0].text && lp.token_logprobs.every((x) => x <= 0), 'logprob tokens spell the text');
});

await test('prefix reuse', async () => {
  const prefilled = async () => {
    const t = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${apiKey}` } })).text();
    const m = t.match(/^lfm2c_prefill_tokens_total (\d+)/m);
    return m ? Number(m[1]) : NaN;
  };
  const first = await client.chat.completions.create({ model, messages: user('My name is Ada.'), max_tokens: 6, temperature: 0 });
  let before = await prefilled();
  const second = await client.chat.completions.create({ model, max_tokens: 6, temperature: 0, messages: [
    ...user('My name is Ada.'), { role: 'assistant', content: first.choices[0].message.content }, ...user('What is my name?')] });
  let read = await prefilled() - before;
  const cached = second.usage.prompt_tokens_details.cached_tokens;
  check(cached >= first.usage.prompt_tokens, `second turn reuses the first (${cached} of ${second.usage.prompt_tokens} cached)`);
  check(read === second.usage.prompt_tokens - cached, `cached tokens are not read again (${read} read, ${cached} of ${second.usage.prompt_tokens} cached)`);
  // the same conversation again ("regenerate"): nothing is read, every prompt token is cached
  before = await prefilled();
  const again = await client.chat.completions.create({ model, max_tokens: 6, temperature: 0, messages: [
    ...user('My name is Ada.'), { role: 'assistant', content: first.choices[0].message.content }, ...user('What is my name?')] });
  read = await prefilled() - before;
  check(read === 0 && again.usage.prompt_tokens_details.cached_tokens === again.usage.prompt_tokens,
    `a prompt read before is not read again (${read} read, ${again.usage.prompt_tokens_details.cached_tokens} cached)`);
  check(again.choices[0].message.content === second.choices[0].message.content, 'and answers the same');
});

await test('n choices', async () => {
  const metric = async () => {
    const t = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${apiKey}` } })).text();
    const m = t.match(/^lfm2c_prefill_tokens_total (\d+)/m);
    return m ? Number(m[1]) : NaN;
  };
  const msgs = user('Count the ways: ' + 'one two three four five six seven eight nine ten '.repeat(8));
  const before = await metric();
  const r = await client.chat.completions.create({ model, messages: msgs, n: 4, max_tokens: 6, temperature: 0 });
  const after = await metric();
  check(r.choices.length === 4 && r.choices.every((c, i) => c.index === i), 'n=4 gives 4 choices indexed 0..3');
  check(r.choices.every((c) => c.message.content === r.choices[0].message.content), 'temperature 0: the choices agree');
  check(r.usage.completion_tokens === r.choices.reduce((a, c) => a + 6, 0), `usage sums the choices (${r.usage.completion_tokens})`);
  check(after - before < 2 * r.usage.prompt_tokens, `the choices share one prefill (${after - before} tokens read for a prompt of ${r.usage.prompt_tokens} x 4)`);
  const hot = await client.chat.completions.create({ model, messages: msgs, n: 8, max_tokens: 8, temperature: 1.5, seed: 11 });
  check(new Set(hot.choices.map((c) => c.message.content)).size > 1, 'temperature 1.5: the choices differ');
  const again = await client.chat.completions.create({ model, messages: msgs, n: 8, max_tokens: 8, temperature: 1.5, seed: 11 });
  check(JSON.stringify(again.choices.map((c) => c.message.content)) === JSON.stringify(hot.choices.map((c) => c.message.content)),
    'a seed makes n choices reproducible');
  // streamed: every index gets its text and its own finish, equal to the plain answer
  const stream = await client.chat.completions.create({ model, messages: msgs, n: 3, max_tokens: 6, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  const texts = ['', '', ''], finishes = [null, null, null];
  let usage = null;
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      texts[c.index] += c.delta.content || '';
      if (c.finish_reason) finishes[c.index] = c.finish_reason;
    }
  }
  check(texts.every((t) => t === r.choices[0].message.content), 'streamed choices equal the plain ones');
  check(finishes.every((f) => f === 'length'), `each streamed choice finishes (${finishes})`);
  check(usage && usage.completion_tokens === 18, 'streamed usage sums the choices');
  // forced tool calls in every choice
  const tc = await client.chat.completions.create({ model, messages: user('weather?'), n: 3, tools: [weatherTool], tool_choice: 'required',
    max_tokens: 80, temperature: 0.8 });
  check(tc.choices.every((c) => c.finish_reason === 'length' || (c.message.tool_calls && c.message.tool_calls.length > 0)),
    'n=3 with tool_choice required: each choice calls the tool');
});

await test('tools together with response_format', async () => {
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: '<|tool_call_start|>' }) })).json();
  const start = tok.tokens[0];
  const schema = { type: 'object', properties: { answer: { type: 'string', maxLength: 8 } }, required: ['answer'], additionalProperties: false };
  const rf = { type: 'json_schema', json_schema: { name: 'a', schema } };
  const isJson = (c) => { try { return validates(JSON.parse(c.message.content), schema); } catch { return false; } };
  const isCall = (c) => c.finish_reason === 'tool_calls' && c.message.tool_calls.length > 0 &&
    c.message.tool_calls.every((t) => t.function.name === 'get_weather' && validates(JSON.parse(t.function.arguments), weatherTool.function.parameters));
  const ask = (extra) => client.chat.completions.create({ model, messages: user('weather in Paris?'), tools: [weatherTool],
    response_format: rf, max_tokens: 200, parallel_tool_calls: false, ...extra });
  const req = await ask({ tool_choice: 'required', temperature: 0 });
  check(isCall(req.choices[0]), 'required + response_format: a tool call');
  const none = await ask({ tool_choice: 'none', temperature: 0.7 });
  check(isJson(none.choices[0]) && !none.choices[0].message.tool_calls, 'none + response_format: the JSON');
  const toCall = await ask({ tool_choice: 'auto', logit_bias: { [start]: 100 } });
  check(isCall(toCall.choices[0]), `auto + response_format, the model opens a call: a valid call (${JSON.stringify(toCall.choices[0].message)})`);
  const toJson = await ask({ tool_choice: 'auto', logit_bias: { [start]: -100 } });
  check(isJson(toJson.choices[0]), 'auto + response_format, the model answers: valid JSON');
  const many = await ask({ tool_choice: 'auto', n: 8, temperature: 1.2, seed: 5 });
  check(many.choices.every((c) => c.finish_reason === 'length' || isCall(c) || isJson(c)), 'auto + response_format: each answer is a call or the JSON');
  const st = await ask({ tool_choice: 'required', stream: true, temperature: 0.7 });
  let calls = 0, finish = null;
  for await (const ch of st) { for (const c of ch.choices) { calls += (c.delta.tool_calls || []).length; finish = c.finish_reason || finish; } }
  check(calls > 0 && finish === 'tool_calls', 'streamed required + response_format: a call');
});

await test('legacy completions: echo with logprobs (the prompt scored)', async () => {
  const post = async (path, body) => (await fetch(`${base}${path}`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body) })).json();
  const prefix = [1, 500, 600, 700];
  const next = await client.completions.create({ model, prompt: prefix, max_tokens: 1, temperature: 0, logprobs: 20 });
  // a token among the alternatives whose text is one token: score prefix + it, compare
  let id = -1, want = 0;
  for (const [text, lp] of Object.entries(next.choices[0].logprobs.top_logprobs[0])) {
    const t = await post('/tokenize', { content: text, parse_special: false });
    if (t.tokens.length === 1) { id = t.tokens[0]; want = lp; break; }
  }
  check(id >= 0, 'a one-token alternative exists');
  const scored = await client.completions.create({ model, prompt: [...prefix, id], max_tokens: 0, echo: true, logprobs: 3 });
  const lp = scored.choices[0].logprobs;
  check(lp.tokens.length === 5 && lp.token_logprobs[0] === null && lp.top_logprobs[0] === null, 'one entry per prompt token, the first null');
  check(Math.abs(lp.token_logprobs[4] - want) < 1e-4, `the prompt token's logprob is what generation gives it (${lp.token_logprobs[4]} vs ${want})`);
  check(scored.usage.completion_tokens === 0 && scored.choices[0].finish_reason === 'length', 'max_tokens 0: nothing generated');
  check(lp.text_offset.every((o, i) => i === 0 || o >= lp.text_offset[i - 1]), 'text offsets grow');
  const s1 = await client.completions.create({ model, prompt: 'The cat sat', max_tokens: 3, echo: true, logprobs: 1, temperature: 0 });
  const l1 = s1.choices[0].logprobs;
  check(l1.tokens.length === s1.usage.prompt_tokens + 3, 'echo + logprobs: prompt and completion entries');
  check(l1.text_offset[0] === 0 && l1.text_offset[1] === 0, 'the added BOS takes no room in the text');
  check(l1.tokens.slice(1).join('') === s1.choices[0].text, 'the entries spell the echoed text');
  check(l1.text_offset.slice(1).every((o, i) => s1.choices[0].text.startsWith(l1.tokens[i + 1], o)), 'each offset points at its token');
  const st = await client.completions.create({ model, prompt: 'The cat sat', max_tokens: 3, echo: true, logprobs: 1, temperature: 0, stream: true });
  const toks = [], lps = [];
  let text = '';
  for await (const ch of st) for (const c of ch.choices) { text += c.text; if (c.logprobs) { toks.push(...c.logprobs.tokens); lps.push(...c.logprobs.token_logprobs); } }
  check(text === s1.choices[0].text && JSON.stringify(toks) === JSON.stringify(l1.tokens), 'streamed echo + logprobs match');
  check(lps.slice(1).every((x, i) => Math.abs(x - l1.token_logprobs[i + 1]) < 1e-5), 'streamed logprobs match');
  const bad = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'x', max_tokens: 0 }) });
  check(bad.status === 400, 'max_tokens 0 without echo is a 400');
});

await test('legacy completions: prompt arrays and echo', async () => {
  const r = await client.completions.create({ model, prompt: ['The cat', 'A dog'], n: 2, max_tokens: 3, temperature: 0, echo: true });
  check(r.choices.length === 4 && r.choices.every((c, i) => c.index === i), 'two prompts x n=2: four choices');
  check(r.choices[0].text.startsWith('The cat') && r.choices[1].text.startsWith('The cat') &&
    r.choices[2].text.startsWith('A dog') && r.choices[3].text.startsWith('A dog'), 'choice p*n+k echoes prompt p');
  const plain = await client.completions.create({ model, prompt: 'The cat', max_tokens: 3, temperature: 0 });
  check(r.choices[0].text === 'The cat' + plain.choices[0].text, 'echo is the prompt followed by the completion');
  const single = await client.completions.create({ model, prompt: 'A dog', max_tokens: 3, temperature: 0 });
  check(r.usage.prompt_tokens === plain.usage.prompt_tokens + single.usage.prompt_tokens, 'usage counts each prompt once');
  const ids = await client.completions.create({ model, prompt: [[1, 510, 2000], [1, 77]], max_tokens: 2, temperature: 0 });
  check(ids.choices.length === 2, 'an array of token arrays: one choice per prompt');
  const one = await client.completions.create({ model, prompt: [1, 510, 2000], max_tokens: 2, temperature: 0 });
  check(one.choices.length === 1 && one.choices[0].text === ids.choices[0].text, 'a token array is one prompt');
  const st = await client.completions.create({ model, prompt: ['x', 'y'], max_tokens: 2, temperature: 0, echo: true, stream: true });
  const got = ['', ''];
  for await (const ch of st) for (const c of ch.choices) got[c.index] += c.text;
  check(got[0].startsWith('x') && got[1].startsWith('y'), 'streamed echo starts with each prompt');
  const byFile = await client.completions.create({ model: 'lfm2-tiny-moe-f32', prompt: 'x', max_tokens: 1 });
  check(byFile.choices.length === 1, 'the model file name (without .gguf) is accepted as the model');
});

await test('errors through the SDK', async () => {
  const expect = async (what, status, fn, code) => {
    try { await fn(); check(false, `${what}: no error`); }
    catch (e) {
      check(e.status === status, `${what}: status ${e.status}, want ${status}`);
      if (code) check(e.code === code, `${what}: code ${e.code}, want ${code}`);
    }
  };
  await expect('missing messages', 400, () => client.chat.completions.create({ model }));
  await expect('bad role', 400, () => client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }));
  await expect('n=17', 400, () => client.chat.completions.create({ model, messages: user('x'), n: 17 }));
  await expect('n=0', 400, () => client.chat.completions.create({ model, messages: user('x'), n: 0 }));
  await expect('unknown model', 404, () => client.chat.completions.create({ model: 'gpt-4o', messages: user('x') }), 'model_not_found');
  await expect('unknown model (legacy)', 404, () => client.completions.create({ model: 'nope', prompt: 'x' }), 'model_not_found');
  await expect('legacy too long', 400, async () => {
    try { await client.completions.create({ model, prompt: 'word '.repeat(3000) }); }
    catch (e) { check(e.param === 'prompt', `too long legacy prompt names param ${e.param}`); throw e; } });
  await expect('prompt array too large', 400, () => client.completions.create({ model, prompt: Array(40).fill('x'), n: 2 }));
  await expect('prompt array of objects', 400, () => client.completions.create({ model, prompt: [{ a: 1 }] }));
  await expect('bad token id in a prompt array', 400, () => client.completions.create({ model, prompt: [[1, 2], [1, -5]] }));
  await expect('temperature type', 400, () => client.chat.completions.create({ model, messages: user('x'), temperature: 'hot' }));
  await expect('unsupported schema', 400, () => client.chat.completions.create({ model, messages: user('x'),
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', contains: { type: 'string' }, maxContains: 2 } } } }));
  const notTool = { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {
    a: { type: 'array', contains: { type: 'string' }, maxContains: 2 } } } } };
  for (const tool_choice of ['auto', 'required', { type: 'function', function: { name: 'f' } }])
    await expect(`unenforceable tool schema, tool_choice ${JSON.stringify(tool_choice)}`, 400, async () => {
      try { await client.chat.completions.create({ model, messages: user('x'), tools: [notTool], tool_choice }); }
      catch (e) { check(/'maxContains'/.test(e.message), `the 400 names the keyword: ${e.message}`); throw e; } });
  await expect('too long', 400, () => client.chat.completions.create({ model, messages: user('word '.repeat(3000)) }), 'context_length_exceeded');
  const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await expect('wrong key', 401, () => bad.models.list(), 'invalid_api_key');
});

report();
