// dialects.mjs — drives the other APIs of a running `lfm2c serve` with their official clients:
// the OpenAI SDK's Responses API, the OpenAI Agents SDK, the Anthropic SDK and ollama-js.
// usage: node dialects.mjs BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:PORT)
// The fixture models have random weights: outputs are noise, so the checks are about shapes and
// the protocol; tool calls and JSON are forced (tool_choice required / any, schemas).
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { Agent, Runner, tool, setTracingDisabled, OpenAIProvider } from '@openai/agents';
import { check, test, report } from './tally.mjs';

const [base, apiKey] = process.argv.slice(2);
const model = 'fixture';
async function throws(fn, status, what, more = () => true) {
  try { await fn(); check(false, `${what}: no error`); } catch (e) {
    check((e.status ?? e.status_code) === status && more(e), `${what}: ${e.status ?? e.status_code} ${e.message}`);
  }
}

const weatherParams = {
  type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] } },
  required: ['city'], additionalProperties: false,
};
const answerSchema = {
  type: 'object', properties: { ok: { type: 'boolean' }, pick: { type: 'string', enum: ['a', 'b'] } },
  required: ['ok', 'pick'], additionalProperties: false,
};
const isAnswer = (v) => v && typeof v.ok === 'boolean' && ['a', 'b'].includes(v.pick) && Object.keys(v).length === 2;

// ---- OpenAI Responses API ----
const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120000 });

await test('responses plain', async () => {
  const r = await oa.responses.create({ model, input: 'Say hi', max_output_tokens: 8, instructions: 'Be brief.' });
  check(r.object === 'response' && r.id.startsWith('resp_'), 'responses: object and id');
  check(['completed', 'incomplete'].includes(r.status), `responses: status ${r.status}`);
  check(typeof r.output_text === 'string' && r.output[0].type === 'message', 'responses: output_text and a message item');
  check(r.usage.output_tokens > 0 && r.usage.output_tokens <= 8 && r.usage.input_tokens > 0 &&
        r.usage.total_tokens === r.usage.input_tokens + r.usage.output_tokens, 'responses: usage');
  check(r.instructions === 'Be brief.' && r.max_output_tokens === 8, 'responses: request fields echoed');
});

await test('responses stream', async () => {
  const s = await oa.responses.create({ model, input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello' }] }],
    max_output_tokens: 12, stream: true });
  const types = [], seqs = [];
  let text = '', final = null;
  for await (const ev of s) {
    types.push(ev.type); seqs.push(ev.sequence_number);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
  }
  check(types[0] === 'response.created' && types[1] === 'response.in_progress', `stream: starts ${types.slice(0, 2)}`);
  for (const t of ['response.output_item.added', 'response.content_part.added', 'response.output_text.delta',
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done'])
    check(types.includes(t), `stream: has ${t}`);
  check(final && types.at(-1) === `response.${final.status}`, 'stream: ends with the final response');
  check(seqs.every((n, i) => n === i), 'stream: sequence numbers');
  check(final && final.output[0].content[0].text === text && final.usage.output_tokens > 0, 'stream: deltas add up to the text');
});

await test('responses tool round trip', async () => {
  const tools = [{ type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: weatherParams, strict: true }];
  const input = [{ role: 'user', content: 'Weather in Paris?' }];
  const r1 = await oa.responses.create({ model, input, tools, tool_choice: 'required', max_output_tokens: 200 });
  const call = r1.output.find((o) => o.type === 'function_call');
  check(call && call.name === 'get_weather' && call.call_id && call.status === 'completed', 'tools: a function_call item');
  check(call && ['Paris', 'Oslo'].includes(JSON.parse(call.arguments).city), 'tools: arguments match the schema');
  const r2 = await oa.responses.create({ model, tools, max_output_tokens: 8,
    input: [...input, ...r1.output, { type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' }] });
  check(r2.status && r2.output.length > 0 && r2.usage.input_tokens > r1.usage.input_tokens, 'tools: answer after function_call_output');
  // the same continued through previous_response_id
  const r3 = await oa.responses.create({ model, tools, max_output_tokens: 8, previous_response_id: r1.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' }] });
  check(r3.previous_response_id === r1.id && r3.usage.input_tokens === r2.usage.input_tokens,
        `tools: previous_response_id holds the conversation (${r3.usage.input_tokens} vs ${r2.usage.input_tokens})`);
  // named tool, streamed: the call's arguments arrive as function_call_arguments events
  const s = await oa.responses.create({ model, input, tools, tool_choice: { type: 'function', name: 'get_weather' },
    max_output_tokens: 200, stream: true });
  const types = [];
  let args = '', done = null;
  for await (const ev of s) {
    types.push(ev.type);
    if (ev.type === 'response.function_call_arguments.delta') args += ev.delta;
    if (ev.type === 'response.function_call_arguments.done') done = ev.arguments;
  }
  check(types.includes('response.function_call_arguments.delta') && done === args && JSON.parse(args).city, 'tools: streamed call');
  check(types.at(-1) === 'response.completed', 'tools: streamed call completes');
});

await test('responses store', async () => {
  const r = await oa.responses.create({ model, input: 'hi', max_output_tokens: 4, store: false });
  check(r.store === false, 'store: echoed');
  await throws(() => oa.responses.create({ model, input: 'more', previous_response_id: r.id, max_output_tokens: 4 }), 404,
               'store:false is not kept');
  await throws(() => oa.responses.create({ model, input: 'more', previous_response_id: 'resp_0000', max_output_tokens: 4 }), 404,
               'unknown previous_response_id');
  await throws(() => oa.responses.retrieve(r.id), 404, 'store:false: retrieve');
  // a stored one: retrieved, its input items listed (a page of one at a time), deleted
  const input = [{ role: 'user', content: 'one' }, { role: 'assistant', content: 'two' }, { role: 'user', content: 'three' }];
  const k = await oa.responses.create({ model, input, max_output_tokens: 4 });
  const got = await oa.responses.retrieve(k.id);
  check(got.id === k.id && got.output_text === k.output_text, 'retrieve: the response made');
  const items = [];
  for await (const it of oa.responses.inputItems.list(k.id, { limit: 1, order: 'asc' })) items.push(it);
  check(items.map((i) => `${i.role}:${i.content[0].text}`).join() === 'user:one,assistant:two,user:three',
        `inputItems.list pages through the input (${JSON.stringify(items)})`);
  await oa.responses.delete(k.id);
  await throws(() => oa.responses.retrieve(k.id), 404, 'deleted: retrieve');
  await throws(() => oa.responses.delete(k.id), 404, 'deleted: delete again');
});

await test('responses structured output', async () => {
  const r = await oa.responses.create({ model, input: 'Answer', max_output_tokens: 200,
    text: { format: { type: 'json_schema', name: 'answer', schema: answerSchema, strict: true } } });
  check(isAnswer(JSON.parse(r.output_text)), `structured: ${r.output_text}`);
});

// ---- OpenAI Agents SDK (Responses model through its provider) ----
await test('agents', async () => {
  setTracingDisabled(true);
  let calls = 0;
  const weather = tool({ name: 'get_weather', description: 'Weather of a city', parameters: weatherParams, strict: true,
    execute: async ({ city }) => { calls++; return `sunny in ${city}`; } });
  const agent = new Agent({ name: 'assistant', instructions: 'Use the tool, then answer.', tools: [weather], model,
    modelSettings: { toolChoice: 'required', maxTokens: 48 } }); // the tool choice resets after the first call
  const runner = new Runner({ modelProvider: new OpenAIProvider({ apiKey, baseURL: `${base}/v1`, useResponses: true }),
    tracingDisabled: true });
  const res = await runner.run(agent, 'Weather in Oslo?', { maxTurns: 4 });
  check(calls >= 1, `agents: the tool ran (${calls})`);
  check(typeof res.finalOutput === 'string', 'agents: the run completes with a final output');
});

// ---- Anthropic Messages ----
const an = new Anthropic({ baseURL: base, apiKey, maxRetries: 0, timeout: 120000 });

await test('anthropic messages', async () => {
  const m = await an.messages.create({ model, max_tokens: 8, system: 'Be brief.', messages: [{ role: 'user', content: 'hi' }] });
  check(m.type === 'message' && m.role === 'assistant' && m.id.startsWith('msg_'), 'anthropic: message');
  check(m.content[0].type === 'text' && typeof m.content[0].text === 'string', 'anthropic: text block');
  check(['end_turn', 'max_tokens'].includes(m.stop_reason) && m.usage.output_tokens > 0 && m.usage.output_tokens <= 8,
        `anthropic: stop_reason ${m.stop_reason} and usage`);
  const s = await an.messages.create({ model, max_tokens: 60, stop_sequences: [' '], temperature: 0.5, top_k: 20,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'count' }] }] });
  check(s.stop_reason === 'stop_sequence' && s.stop_sequence === ' ', `anthropic: stop_sequence (${s.stop_reason})`);
});

await test('anthropic stream', async () => {
  const raw = await an.messages.create({ model, max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const types = [];
  let text = '';
  for await (const ev of raw) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  check(types[0] === 'message_start' && types.at(-1) === 'message_stop' && types.at(-2) === 'message_delta',
        `anthropic stream: ${types.join(',')}`);
  check(types.includes('content_block_start') && types.includes('content_block_stop'), 'anthropic stream: blocks');
  const fm = await an.messages.stream({ model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).finalMessage();
  check(fm.type === 'message' && fm.usage.output_tokens > 0 && ['end_turn', 'max_tokens'].includes(fm.stop_reason),
        'anthropic stream: finalMessage');
});

await test('anthropic tool use', async () => {
  const tools = [{ name: 'get_weather', description: 'Weather of a city', input_schema: weatherParams }];
  const messages = [{ role: 'user', content: 'Weather in Oslo?' }];
  const m = await an.messages.create({ model, max_tokens: 200, tools, tool_choice: { type: 'any' }, messages });
  const use = m.content.find((b) => b.type === 'tool_use');
  check(m.stop_reason === 'tool_use' && use && use.name === 'get_weather' && ['Paris', 'Oslo'].includes(use.input.city),
        `anthropic tools: tool_use (${m.stop_reason})`);
  const m2 = await an.messages.create({ model, max_tokens: 8, tools, messages: [...messages, { role: 'assistant', content: m.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] }] });
  check(m2.type === 'message' && m2.usage.input_tokens + (m2.usage.cache_read_input_tokens || 0) >
        m.usage.input_tokens + (m.usage.cache_read_input_tokens || 0), 'anthropic tools: answer after tool_result');
  const fm = await an.messages.stream({ model, max_tokens: 200, tools, tool_choice: { type: 'tool', name: 'get_weather' },
    messages }).finalMessage();
  const su = fm.content.find((b) => b.type === 'tool_use');
  check(fm.stop_reason === 'tool_use' && su && ['Paris', 'Oslo'].includes(su.input.city), 'anthropic tools: streamed input_json_delta');
});

await test('anthropic count_tokens and errors', async () => {
  const a = await an.messages.countTokens({ model, messages: [{ role: 'user', content: 'hi' }] });
  const b = await an.messages.countTokens({ model, system: 'You are a helpful assistant with a long system prompt.',
    messages: [{ role: 'user', content: 'hi' }] });
  check(a.input_tokens > 0 && b.input_tokens > a.input_tokens, `count_tokens: ${a.input_tokens} < ${b.input_tokens}`);
  await throws(() => an.messages.create({ model, messages: [{ role: 'user', content: 'hi' }] }), 400, 'anthropic: max_tokens required',
               (e) => e.error?.type === 'error' && e.error?.error?.type === 'invalid_request_error');
  const bad = new Anthropic({ baseURL: base, apiKey: 'nope', maxRetries: 0 });
  await throws(() => bad.messages.create({ model, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }), 401, 'anthropic: wrong key',
               (e) => e.error?.error?.type === 'authentication_error');
});

// ---- Ollama ----
const ol = new Ollama({ host: base, headers: { Authorization: `Bearer ${apiKey}` } });

await test('ollama chat', async () => {
  const r = await ol.chat({ model, messages: [{ role: 'user', content: 'hi' }], stream: false, options: { num_predict: 8, temperature: 0.7 },
    keep_alive: '5m' });
  check(r.done === true && r.message.role === 'assistant' && typeof r.message.content === 'string', 'ollama chat: message');
  check(['stop', 'length'].includes(r.done_reason) && r.eval_count > 0 && r.eval_count <= 8 && r.prompt_eval_count > 0 &&
        r.total_duration > 0, 'ollama chat: counts and durations');
  const parts = [];
  for await (const p of await ol.chat({ model, messages: [{ role: 'user', content: 'hi' }], stream: true, options: { num_predict: 6 } }))
    parts.push(p);
  check(parts.length >= 2 && parts.at(-1).done === true && parts.slice(0, -1).every((p) => p.done === false), 'ollama chat: stream');
});

await test('ollama generate', async () => {
  const r = await ol.generate({ model, prompt: 'Once', system: 'Tell a story.', stream: false, options: { num_predict: 5, seed: 3 } });
  check(r.done === true && typeof r.response === 'string' && r.eval_count <= 5, 'ollama generate');
  const parts = [];
  for await (const p of await ol.generate({ model, prompt: 'Once', stream: true, options: { num_predict: 5, stop: ['zzz'] } }))
    parts.push(p);
  check(parts.at(-1).done === true && parts.at(-1).eval_count <= 5 && parts.slice(0, -1).every((p) => typeof p.response === 'string'),
        'ollama generate: stream');
  const raw = await ol.generate({ model, prompt: 'Once upon', raw: true, stream: false, options: { num_predict: 3 } });
  check(raw.done === true && raw.eval_count <= 3 && raw.prompt_eval_count < r.prompt_eval_count, 'ollama generate: raw');
});

await test('ollama tools and format', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: weatherParams } }];
  const messages = [{ role: 'user', content: 'Weather in Oslo?' }];
  // Ollama has no tool_choice; lfm2c accepts it as an extension (the random model would never call)
  const r = await ol.chat({ model, messages, tools, tool_choice: 'required', stream: false, options: { num_predict: 200 } });
  const call = r.message.tool_calls?.[0];
  check(call && call.function.name === 'get_weather' && typeof call.function.arguments === 'object' &&
        ['Paris', 'Oslo'].includes(call.function.arguments.city), 'ollama tools: a call with object arguments');
  const r2 = await ol.chat({ model, tools, stream: false, options: { num_predict: 5 },
    messages: [...messages, r.message, { role: 'tool', content: 'sunny', tool_name: 'get_weather' }] });
  check(r2.done && r2.prompt_eval_count > r.prompt_eval_count, 'ollama tools: round trip');
  const f = await ol.chat({ model, messages: [{ role: 'user', content: 'Answer' }], format: answerSchema, stream: false,
    options: { num_predict: 200 } });
  check(isAnswer(JSON.parse(f.message.content)), `ollama format schema: ${f.message.content}`);
  const g = await ol.generate({ model, prompt: 'JSON', format: 'json', stream: false, options: { num_predict: 300 } });
  let ok = false;
  try { ok = typeof JSON.parse(g.response) === 'object'; } catch { ok = g.done_reason === 'length'; }
  check(ok, 'ollama format json');
});

await test('ollama models', async () => {
  const l = await ol.list();
  check(l.models.length === 1 && l.models[0].name === 'fixture:latest' && l.models[0].details.format === 'gguf', 'ollama list');
  const s = await ol.show({ model: 'fixture' });
  check(s.details.family && s.details.parameter_size && s.details.quantization_level === 'F32', 'ollama show: details');
  const arch = s.model_info['general.architecture'];
  check(arch && s.model_info[`${arch}.context_length`] > 0 && s.template.length > 0, 'ollama show: model_info and template');
  const p = await ol.ps();
  check(p.models[0].name === 'fixture:latest' && p.models[0].context_length > 0, 'ollama ps');
  const v = await ol.version();
  check(typeof v.version === 'string', 'ollama version');
  await throws(() => ol.show({ model: 'nope' }), 404, 'ollama show unknown model', (e) => /not found/.test(e.error || e.message));
  await throws(() => ol.chat({ model, messages: 'x', stream: false }), 400, 'ollama bad messages');
});

report();
