// openapi.mjs — judges a running `lfm2c serve` against OpenAI's published OpenAPI specification:
// every JSON body and every streamed event it sends for chat completions (plain, stream, n,
// logprobs, tools, response_format), completions (plain, stream, logprobs, echo, suffix),
// embeddings, models and the Responses API (plain, stream, logprobs, tools, text.format, store,
// previous_response_id, retrieve, input_items, delete) is validated with ajv (and ajv-formats)
// against the spec's own schemas, as tests/server/openapi-schemas.json has them (extracted from the
// spec by tests/server/openapi_extract.py, which names the commit). Raw HTTP, not an SDK: an SDK
// forgives what the spec does not.
// usage: node openapi.mjs BASE_URL API_KEY [--thinking]
//   --thinking: the server runs --test-script with a thinking template (tests/test_server.sh's
//   'reason' server): the reasoning items and events of a thinking model, in chat and Responses.
// The fixture models have random weights: outputs are noise (seeded, so that each run sees the
// same); what is judged is the shape.
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';
import { check, test, report } from './tally.mjs';

const [base, apiKey, mode] = process.argv.slice(2);
const thinking = mode === '--thinking';
const model = 'fixture';
const doc = JSON.parse(readFileSync(new URL('./openapi-schemas.json', import.meta.url), 'utf8'));
const S = doc.components.schemas;

// ---- what the spec itself gets wrong, relaxed here (and only this) --------------------------------
// 1. `nullable: true` is OpenAPI 3.0's keyword; in this 3.1 document (JSON Schema 2020-12) it means
//    nothing, and ajv refuses it beside a $ref. The spec's intent is "or null" (OpenAI's own
//    streams send `logprobs: null`, `finish_reason: null` and `usage: null` where it stands:
//    CreateChatCompletionStreamResponse), so {nullable: true, ...s} becomes {anyOf: [s, null]}.
// 2. `$recursiveRef: "#"` (CompoundFilter, a file_search filter this server never sends) is a
//    2019-09 keyword, not 2020-12's; its intent is the filter itself, so it becomes a $ref to the
//    schema that carries `$recursiveAnchor`.
// 3. Embedding.embedding is typed as an array of floats only; with encoding_format "base64" the
//    API (OpenAI's, and so its SDKs, which decode it) sends the vector as a base64 string, which
//    the spec's CreateEmbeddingRequest documents. Base64 answers are judged with that one field a
//    base64 string.
// 4. With echo, the first token of the prompt has no log probability (nothing comes before it):
//    OpenAI's completions send null for its token_logprobs and top_logprobs entries, where the
//    spec types every entry as a number / an object. Echoed answers are judged with those
//    entries also null (and only those answers).
// 5. The spec has no schema for the chunks of a streamed completion (/v1/completions): its
//    CreateCompletionResponse says it is "the same shape" for streamed and non-streamed, and OpenAI
//    streams `finish_reason: null` until the last chunk. Stream chunks are judged against
//    CreateCompletionResponse with finish_reason also null.
function relax(v, anchor) {
  if (Array.isArray(v)) return v.map((x) => relax(x, anchor));
  if (!v || typeof v !== 'object') return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = k === 'properties' ? Object.fromEntries(Object.entries(x).map(([p, s]) => [p, relax(s, anchor)])) : relax(x, anchor);
  if (out.$recursiveRef === '#' && anchor) { delete out.$recursiveRef; out.$ref = `#/components/schemas/${anchor}`; }
  delete out.$recursiveAnchor;
  if (out.nullable === true) { delete out.nullable; return { anyOf: [out, { type: 'null' }] }; }
  return out;
}
const relaxed = { components: { schemas: {} } };
for (const [name, s] of Object.entries(S)) relaxed.components.schemas[name] = relax(s, s.$recursiveAnchor ? name : null);
const R = relaxed.components.schemas;
R.CreateEmbeddingResponseBase64 = structuredClone(R.CreateEmbeddingResponse);
R.CreateEmbeddingResponseBase64.properties.data.items = {
  type: 'object', required: ['index', 'object', 'embedding'],
  properties: { ...R.Embedding.properties, embedding: { type: 'string', contentEncoding: 'base64', pattern: '^[A-Za-z0-9+/]*={0,2}$' } },
};
R.CreateCompletionStreamChunk = structuredClone(R.CreateCompletionResponse);
{
  const fr = R.CreateCompletionStreamChunk.properties.choices.items.properties;
  fr.finish_reason = { anyOf: [fr.finish_reason, { type: 'null' }] };
}

R.CreateCompletionResponseEcho = structuredClone(R.CreateCompletionResponse);
{
  const lp = R.CreateCompletionResponseEcho.properties.choices.items.properties.logprobs.anyOf[0].properties;
  for (const k of ['token_logprobs', 'top_logprobs']) lp[k].items = { anyOf: [lp[k].items, { type: 'null' }] };
}

// ---- the validator ---------------------------------------------------------------------------------
// strict: false — the spec carries keywords JSON Schema does not define (discriminator, whose
// oneOf / anyOf the validator checks in full anyway); unknown keywords are ignored, not guessed at.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
// the spec's own formats: unixtime (seconds since the epoch, a non-negative integer) and float
ajv.addFormat('unixtime', { type: 'number', validate: (n) => Number.isInteger(n) && n >= 0 });
ajv.addFormat('float', { type: 'number', validate: (n) => Number.isFinite(n) });
ajv.addSchema(relaxed, 'openapi');
const compiled = new Map();
function validator(name) {
  if (!compiled.has(name)) {
    const v = ajv.getSchema(`openapi#/components/schemas/${name}`);
    if (!v) throw new Error(`no schema ${name}`);
    compiled.set(name, v);
  }
  return compiled.get(name);
}
// The stream event schemas by their type (ResponseStreamEvent is an anyOf of them): an event is
// judged against its own schema (a readable error) and against the union.
const eventSchema = new Map();
for (const alt of R.ResponseStreamEvent.anyOf) {
  const name = alt.$ref.split('/').at(-1);
  for (const t of R[name]?.properties?.type?.enum ?? []) eventSchema.set(t, name);
}

let judged = 0, conforming = 0;
const trim = (s) => (s.length > 600 ? `${s.slice(0, 600)}...` : s);
function conforms(name, value, what) {
  const v = validator(name);
  const ok = v(value);
  judged++;
  if (ok) conforming++;
  check(ok, `${what} does not conform to ${name}: ${trim(ajv.errorsText(v.errors, { separator: '; ' }))} in ${trim(JSON.stringify(value))}`);
  return ok;
}

// ---- HTTP ------------------------------------------------------------------------------------------
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
async function call(method, path, body) {
  const r = await fetch(`${base}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(120000) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* judged by the caller */ }
  return { status: r.status, type: r.headers.get('content-type') || '', json, text };
}
// A JSON answer, judged against schema; returns the body.
async function body(method, path, req, schema, what, status = 200) {
  const r = await call(method, path, req);
  check(r.status === status && r.json && r.type.startsWith('application/json'), `${what}: HTTP ${r.status} ${r.type} ${trim(r.text)}`);
  if (r.json) conforms(schema, r.json, what);
  return r.json;
}
// A server-sent-event stream: [{event, data}] with data parsed (the string "[DONE]" kept as is).
async function sse(path, req) {
  const r = await call('POST', path, req);
  check(r.status === 200 && r.type.startsWith('text/event-stream'), `${path} stream: HTTP ${r.status} ${r.type} ${trim(r.text)}`);
  const events = [];
  for (const block of r.text.split(/\r?\n\r?\n/)) {
    let event = null; const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (!data.length) continue;
    const text = data.join('\n');
    let parsed = text;
    if (text !== '[DONE]') {
      try { parsed = JSON.parse(text); } catch { check(false, `${path} stream: an event that is not JSON: ${trim(text)}`); continue; }
    }
    events.push({ event, data: parsed });
  }
  return events;
}
// A chat or completions stream: every chunk against schema, then [DONE] last.
async function chunks(path, req, schema, what) {
  const events = await sse(path, { ...req, stream: true });
  check(events.length > 1 && events.at(-1).data === '[DONE]', `${what}: ends with [DONE]`);
  const out = [];
  for (const [i, e] of events.entries()) {
    if (e.data === '[DONE]') continue;
    conforms(schema, e.data, `${what} chunk ${i}`);
    out.push(e.data);
  }
  return out;
}
// A Responses stream: each event against its own schema and the union, the SSE event name its type.
async function rsStream(req, what) {
  const events = await sse('/v1/responses', { ...req, stream: true });
  const out = [];
  for (const [i, e] of events.entries()) {
    const t = e.data?.type;
    check(e.event === t, `${what} event ${i}: event name ${e.event} for type ${t}`);
    if (!eventSchema.has(t)) { check(false, `${what} event ${i}: type ${t} is not a ResponseStreamEvent`); continue; }
    if (conforms(eventSchema.get(t), e.data, `${what} event ${i} (${t})`)) conforms('ResponseStreamEvent', e.data, `${what} event ${i} (${t})`);
    out.push(e.data);
  }
  check(out.length && ['response.completed', 'response.incomplete'].includes(out.at(-1).type), `${what}: ends with the final response`);
  return out;
}

const user = (content) => [{ role: 'user', content }];
const weather = {
  type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] } }, required: ['city'], additionalProperties: false,
};
const chatTools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: weather } }];
const rsTools = [{ type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: weather, strict: true }];
const answer = {
  type: 'object', properties: { ok: { type: 'boolean' }, pick: { type: 'string', enum: ['a', 'b'] } },
  required: ['ok', 'pick'], additionalProperties: false,
};
const CHAT = '/v1/chat/completions', COMPL = '/v1/completions', RESP = '/v1/responses';
const THINK_SCRIPT = '<think>\nLet me think.\n</think>\n\nParis.';
const script = thinking ? { test_script: THINK_SCRIPT } : {};
const few = thinking ? 60 : 8; // tokens: a thinking script's whole block and answer

// ---- chat completions ------------------------------------------------------------------------------
await test('chat', async () => {
  const plain = { model, messages: user('Hello there'), max_tokens: few, seed: 7, ...script };
  const r = await body('POST', CHAT, plain, 'CreateChatCompletionResponse', 'chat');
  check(r?.choices?.[0]?.message && 'refusal' in r.choices[0].message, 'chat: the message has refusal');
  await chunks(CHAT, { ...plain, stream_options: { include_usage: true } }, 'CreateChatCompletionStreamResponse', 'chat stream');
  if (thinking) return;
  await body('POST', CHAT, { ...plain, n: 2, temperature: 0.9 }, 'CreateChatCompletionResponse', 'chat n=2');
  await chunks(CHAT, { ...plain, n: 2, temperature: 0.9 }, 'CreateChatCompletionStreamResponse', 'chat stream n=2');
  const lp = { ...plain, logprobs: true, top_logprobs: 2 };
  const l = await body('POST', CHAT, lp, 'CreateChatCompletionResponse', 'chat logprobs');
  check(l?.choices?.[0]?.logprobs?.content?.length > 0, 'chat logprobs: content entries');
  const lc = await chunks(CHAT, lp, 'CreateChatCompletionStreamResponse', 'chat stream logprobs');
  check(lc.some((c) => c.choices[0]?.logprobs?.content?.length), 'chat stream logprobs: content entries');
  const tools = { model, messages: user('Weather in Paris?'), tools: chatTools, tool_choice: 'required', max_tokens: 60 };
  const t = await body('POST', CHAT, tools, 'CreateChatCompletionResponse', 'chat tools');
  check(t?.choices?.[0]?.message?.tool_calls?.length > 0, 'chat tools: a tool call');
  await chunks(CHAT, tools, 'CreateChatCompletionStreamResponse', 'chat stream tools');
  const rf = { model, messages: user('Answer'), max_tokens: 60, response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: answer, strict: true } } };
  await body('POST', CHAT, rf, 'CreateChatCompletionResponse', 'chat json_schema');
  await chunks(CHAT, rf, 'CreateChatCompletionStreamResponse', 'chat stream json_schema');
  await body('POST', CHAT, { ...rf, response_format: { type: 'json_object' } }, 'CreateChatCompletionResponse', 'chat json_object');
  await body('POST', CHAT, { ...plain, model: 'no-such-model' }, 'ErrorResponse', 'chat unknown model', 404);
});

// ---- completions, embeddings, models ---------------------------------------------------------------
if (!thinking) {
  await test('completions', async () => {
    const plain = { model, prompt: 'Once upon a time', max_tokens: 6, seed: 7 };
    await body('POST', COMPL, plain, 'CreateCompletionResponse', 'completion');
    await chunks(COMPL, { ...plain, stream_options: { include_usage: true } }, 'CreateCompletionStreamChunk', 'completion stream');
    const l = await body('POST', COMPL, { ...plain, logprobs: 2 }, 'CreateCompletionResponse', 'completion logprobs');
    check(l?.choices?.[0]?.logprobs?.tokens?.length > 0, 'completion logprobs: tokens');
    await chunks(COMPL, { ...plain, logprobs: 2 }, 'CreateCompletionStreamChunk', 'completion stream logprobs');
    const echo = await body('POST', COMPL, { ...plain, echo: true, logprobs: 1 }, 'CreateCompletionResponseEcho', 'completion echo');
    const el = echo?.choices?.[0]?.logprobs;
    check(el && el.token_logprobs.slice(1).every((x) => typeof x === 'number') && el.top_logprobs.slice(1).every((x) => x && typeof x === 'object'),
          'completion echo: only the first token goes without a logprob');
    await body('POST', COMPL, { ...plain, prompt: 'def add(a, b):\n', suffix: '\n    return c\n' }, 'CreateCompletionResponse', 'completion suffix');
    await body('POST', COMPL, { ...plain, prompt: ['one', 'two'], n: 2 }, 'CreateCompletionResponse', 'completion two prompts, n=2');
  });

  await test('embeddings', async () => {
    await body('POST', '/v1/embeddings', { model, input: 'hello' }, 'CreateEmbeddingResponse', 'embeddings');
    await body('POST', '/v1/embeddings', { model, input: ['a', 'b'], encoding_format: 'float' }, 'CreateEmbeddingResponse', 'embeddings, two');
    await body('POST', '/v1/embeddings', { model, input: 'hello', encoding_format: 'base64' }, 'CreateEmbeddingResponseBase64', 'embeddings base64');
  });

  await test('models', async () => {
    await body('GET', '/v1/models', null, 'ListModelsResponse', 'models');
    await body('GET', `/v1/models/${model}`, null, 'Model', 'model');
    await body('GET', '/v1/models/no-such-model', null, 'ErrorResponse', 'unknown model', 404);
  });
}

// ---- Responses -------------------------------------------------------------------------------------
// The stored response, its input items (both orders, a page at a time) and its deletion.
async function stored(r, what, n_input) {
  const got = await body('GET', `${RESP}/${r.id}`, null, 'Response', `${what}: GET`);
  check(got && got.id === r.id && JSON.stringify(got.output) === JSON.stringify(r.output) &&
        JSON.stringify(got.usage) === JSON.stringify(r.usage), `${what}: GET gives the response made`);
  const all = await body('GET', `${RESP}/${r.id}/input_items?order=asc&limit=100`, null, 'ResponseItemList', `${what}: input_items`);
  check(all?.data?.length === n_input && all.has_more === false && all.first_id === all.data[0]?.id &&
        all.last_id === all.data.at(-1)?.id, `${what}: input_items lists the ${n_input} input items (${JSON.stringify(all)})`);
  const desc = await body('GET', `${RESP}/${r.id}/input_items`, null, 'ResponseItemList', `${what}: input_items, newest first`);
  check(JSON.stringify(desc?.data) === JSON.stringify([...(all?.data ?? [])].reverse()), `${what}: order desc is the default`);
  const page = await body('GET', `${RESP}/${r.id}/input_items?order=asc&limit=1`, null, 'ResponseItemList', `${what}: input_items limit=1`);
  check(page?.data?.length === 1 && page.has_more === n_input > 1, `${what}: limit=1 gives one item, has_more`);
  if (n_input > 1) {
    const next = await body('GET', `${RESP}/${r.id}/input_items?order=asc&limit=1&after=${page.last_id}`, null, 'ResponseItemList', `${what}: input_items after`);
    check(next?.data?.[0]?.id === all?.data?.[1]?.id, `${what}: after= gives the next page`);
  }
  return all?.data ?? [];
}

await test('responses', async () => {
  const plain = { model, input: 'Say hi', instructions: 'Be brief.', max_output_tokens: few, seed: 7, ...script };
  const r = await body('POST', RESP, plain, 'Response', 'response');
  const events = await rsStream(plain, 'response stream');
  if (r) await stored(r, 'response', 1);
  if (thinking) {
    check(r?.output?.[0]?.type === 'reasoning' && r.output[1]?.type === 'message', 'thinking: a reasoning item, then the message');
    const types = new Set(events.map((e) => e.type));
    check(['response.reasoning_text.delta', 'response.reasoning_text.done', 'response.output_text.delta'].every((t) => types.has(t)),
          `thinking: reasoning and text events (${[...types]})`);
    // the reasoning item given back as input is listed as such
    const again = await body('POST', RESP, { model, input: [{ role: 'user', content: 'Hi' }, ...r.output, { role: 'user', content: 'More' }], max_output_tokens: few, ...script }, 'Response', 'response after reasoning');
    if (again) {
      const items = await stored(again, 'response after reasoning', 4);
      check(items.map((i) => i.type).join() === 'message,reasoning,message,message', `input_items after reasoning: ${items.map((i) => i.type)}`);
    }
    return;
  }
  const lp = { ...plain, include: ['message.output_text.logprobs'], top_logprobs: 2 };
  const l = await body('POST', RESP, lp, 'Response', 'response logprobs');
  check(l?.output?.[0]?.content?.[0]?.logprobs?.length > 0, 'response logprobs: entries');
  await rsStream(lp, 'response stream logprobs');
  const input = [{ role: 'user', content: 'Weather in Paris?' }];
  const tools = { model, input, tools: rsTools, tool_choice: 'required', max_output_tokens: 200 };
  const t = await body('POST', RESP, tools, 'Response', 'response tools');
  const fc = t?.output?.find((o) => o.type === 'function_call');
  check(fc, 'response tools: a function_call item');
  await rsStream({ ...tools, tool_choice: { type: 'function', name: 'get_weather' } }, 'response stream tools');
  // the call answered: input items of every kind (message, function_call, its output, a reference)
  const more = [...input, fc, { type: 'function_call_output', call_id: fc?.call_id, output: '{"temp":21}' }];
  const t2 = await body('POST', RESP, { model, tools: rsTools, input: more, max_output_tokens: 8 }, 'Response', 'response after a call');
  if (t2) {
    const items = await stored(t2, 'response after a call', 3);
    check(items.map((i) => i.type).join() === 'message,function_call,function_call_output', `input_items: the kinds (${items.map((i) => i.type)})`);
  }
  const ref = { model, input: [{ type: 'item_reference', id: fc?.id }, { type: 'function_call_output', call_id: fc?.call_id, output: 'sunny' }], max_output_tokens: 8 };
  const t3 = await body('POST', RESP, ref, 'Response', 'response with an item_reference');
  if (t3) await stored(t3, 'response with an item_reference', 2);
  const fmt = { model, input: 'Answer', max_output_tokens: 60, text: { format: { type: 'json_schema', name: 'answer', schema: answer, strict: true } } };
  await body('POST', RESP, fmt, 'Response', 'response text.format json_schema');
  await rsStream(fmt, 'response stream text.format json_schema');
  await body('POST', RESP, { ...fmt, text: { format: { type: 'json_object' } } }, 'Response', 'response text.format json_object');
  // previous_response_id, then the store: kept, listed, deleted
  const next = await body('POST', RESP, { model, input: 'And then?', previous_response_id: r?.id, max_output_tokens: 8 }, 'Response', 'response previous_response_id');
  await rsStream({ model, input: 'And then?', previous_response_id: r?.id, max_output_tokens: 8 }, 'response stream previous_response_id');
  if (next) await stored(next, 'response previous_response_id', 1);
  const del = await call('DELETE', `${RESP}/${r?.id}`);
  check(del.status === 200 && del.json?.id === r?.id && del.json?.deleted === true, `DELETE a response: ${del.status} ${del.text}`);
  await body('GET', `${RESP}/${r?.id}`, null, 'ErrorResponse', 'GET a deleted response', 404);
  await body('GET', `${RESP}/${r?.id}/input_items`, null, 'ErrorResponse', 'input_items of a deleted response', 404);
  await body('DELETE', `${RESP}/${r?.id}`, null, 'ErrorResponse', 'DELETE a deleted response', 404);
  await body('POST', RESP, { model, input: 'x', previous_response_id: r?.id }, 'ErrorResponse', 'previous_response_id of a deleted response', 404);
  await body('POST', RESP, { model, input: [{ type: 'item_reference', id: r?.output?.[0]?.id }] }, 'ErrorResponse', 'an output item of a deleted response', 400);
  const off = await body('POST', RESP, { ...plain, store: false }, 'Response', 'response store false');
  await rsStream({ ...plain, store: false }, 'response stream store false');
  check(off?.store === false, 'store false: echoed');
  await body('GET', `${RESP}/${off?.id}`, null, 'ErrorResponse', 'GET a response not stored', 404);
  await body('GET', `${RESP}/${next?.id}/input_items?limit=0`, null, 'ErrorResponse', 'input_items limit=0', 400);
  await body('GET', `${RESP}/${next?.id}/input_items?order=up`, null, 'ErrorResponse', 'input_items order=up', 400);
  await body('POST', RESP, { model, input: 7 }, 'ErrorResponse', 'response, input 7', 400);
});

console.error(`openapi.mjs: ${conforming} of ${judged} bodies and events conform to ${doc.source.repository}@${doc.source.commit.slice(0, 12)}`);
report();
