// reasoning.mjs — a thinking model's <think>...</think> block kept apart from the answer, in every
// API of a running `lfm2c serve --test-script --chat-template-file LFM2.5-8B-A1B...`, driven by the
// official clients (openai, @anthropic-ai/sdk, ollama).
// usage: node reasoning.mjs BASE_URL
// The fixture model has random weights, so most outputs are scripted: a request's test_script is
// the output, each token still chosen through the constraints' mask (a script the mask forbids is
// a 400). Where the sampler runs free, logit_bias pushes it to open a block through the mask.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { check, test, report } from './tally.mjs';

const [base] = process.argv.slice(2);
const model = 'fixture';
async function throws(fn, status, what, more = () => true) {
  try { await fn(); check(false, `${what}: no error`); } catch (e) {
    check((e.status ?? e.status_code) === status && more(e), `${what}: ${e.status ?? e.status_code} ${e.message}`);
  }
}

const THINK = 'Let me think about it: { not JSON } <|tool_call_start|> not a call.';
const SCRIPT = `<think>\n${THINK}\n</think>\n\nParis.`;
const weather = {
  type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] } }, required: ['city'], additionalProperties: false,
};
const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: weather } }];
const CALL = '<|tool_call_start|>[get_weather(city="Oslo")]<|tool_call_end|>';
const user = [{ role: 'user', content: 'What is the capital of France?' }];

// ---- OpenAI chat completions ----
const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000 });

await test('chat: reasoning_content', async () => {
  const r = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, test_script: SCRIPT });
  const m = r.choices[0].message;
  check(m.reasoning_content === THINK, `chat: reasoning_content ${JSON.stringify(m.reasoning_content)}`);
  check(m.content === 'Paris.', `chat: content ${JSON.stringify(m.content)}`);
  check(!m.tool_calls && r.choices[0].finish_reason === 'stop', 'chat: the call marker inside the thinking is no call');
  const d = r.usage.completion_tokens_details;
  check(d && d.reasoning_tokens > 10 && d.reasoning_tokens < r.usage.completion_tokens, `chat: reasoning_tokens ${JSON.stringify(d)}`);
});

await test('chat: streamed reasoning_content deltas', async () => {
  const s = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, test_script: SCRIPT, stream: true });
  let think = '', text = '', order = '', nThink = 0;
  for await (const c of s) {
    const d = c.choices[0]?.delta ?? {};
    if (d.reasoning_content) { think += d.reasoning_content; nThink++; if (!order.endsWith('r')) order += 'r'; }
    if (d.content) { text += d.content; if (!order.endsWith('c')) order += 'c'; }
  }
  check(think === THINK && text === 'Paris.', `stream: ${JSON.stringify(think)} / ${JSON.stringify(text)}`);
  check(order === 'rc' && nThink >= 1, `stream: the thinking streams first, as its own deltas (${order}, ${nThink})`);
});

await test('chat: the prompt opened the block', async () => {
  // the same text without the open tag is all answer ...
  const r = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, test_script: `${THINK}</think>Paris.` });
  check(!r.choices[0].message.reasoning_content && r.choices[0].message.content === `${THINK}</think>Paris.`,
        'no open tag: all answer');
});

await test('chat: structured output after the thinking', async () => {
  const rf = { type: 'json_schema', json_schema: { name: 'w', schema: weather, strict: true } };
  const r = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, response_format: rf,
    test_script: `<think>${THINK}</think>{"city":"Paris"}` });
  const m = r.choices[0].message;
  check(m.reasoning_content === THINK && JSON.parse(m.content).city === 'Paris', `json: ${JSON.stringify(m)}`);
  // without thinking, the JSON from the first token
  const r2 = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, response_format: rf,
    test_script: '{"city":"Oslo"}' });
  check(!r2.choices[0].message.reasoning_content && JSON.parse(r2.choices[0].message.content).city === 'Oslo', 'json: no block');
  // the grammar still holds after the block: text that is not the schema is refused by the mask
  await throws(() => oa.chat.completions.create({ model, messages: user, max_tokens: 100, response_format: rf,
    test_script: `<think>${THINK}</think>Paris.` }), 400, 'json: the answer after the block is constrained');
  // thinking off (reasoning_effort none): the grammar applies from the first token, no block may open
  await throws(() => oa.chat.completions.create({ model, messages: user, max_tokens: 100, response_format: rf,
    reasoning_effort: 'none', test_script: `<think>${THINK}</think>{"city":"Paris"}` }), 400, 'json: effort none, no block');
  const r3 = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, response_format: rf,
    reasoning_effort: 'minimal', test_script: '{"city":"Paris"}' });
  check(JSON.parse(r3.choices[0].message.content).city === 'Paris', 'json: effort minimal');
});

await test('chat: the sampler opens a block through the mask, the budget closes it, then JSON', async () => {
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: '<', add_special: false }) })).json();
  const lt = tok.tokens[0];
  for (const stream of [false, true]) {
    const args = { model, messages: user, max_tokens: 80, response_format: { type: 'json_object' }, thinking_token_budget: 6,
      logit_bias: { [lt]: 40 }, temperature: 1, seed: 3 };
    let think = '', text = '', finish = null, usage = null;
    if (!stream) {
      const r = await oa.chat.completions.create(args);
      think = r.choices[0].message.reasoning_content ?? ''; text = r.choices[0].message.content; finish = r.choices[0].finish_reason;
      usage = r.usage;
    } else {
      for await (const c of await oa.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } })) {
        if (c.usage) usage = c.usage;
        const ch = c.choices[0];
        if (!ch) continue;
        think += ch.delta.reasoning_content ?? ''; text += ch.delta.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    check(think.length > 0 && /^<+$/.test(think), `free (stream ${stream}): the model thought (${JSON.stringify(think)})`);
    check(usage.completion_tokens_details.reasoning_tokens >= 6, `free: the budget closed the block (${JSON.stringify(usage)})`);
    check(text.startsWith('{') && !text.includes('<think>'), `free: the answer is the JSON (${JSON.stringify(text)})`);
    if (finish === 'stop') check(typeof JSON.parse(text) === 'object', 'free: complete JSON');
  }
});

await test('chat: tool calls after the thinking', async () => {
  const r = await oa.chat.completions.create({ model, messages: user, tools, tool_choice: 'required', max_tokens: 120,
    test_script: `<think>${THINK}</think>${CALL}` });
  const m = r.choices[0].message;
  check(m.reasoning_content === THINK && m.tool_calls?.length === 1 && JSON.parse(m.tool_calls[0].function.arguments).city === 'Oslo' &&
        r.choices[0].finish_reason === 'tool_calls', `required: ${JSON.stringify(m)}`);
  const r2 = await oa.chat.completions.create({ model, messages: user, tools, max_tokens: 120,
    test_script: `<think>${THINK}</think>Checking. ${CALL}` });
  const m2 = r2.choices[0].message;
  check(m2.reasoning_content === THINK && m2.content === 'Checking.' && m2.tool_calls?.length === 1, `auto: ${JSON.stringify(m2)}`);
  // streamed: the call arrives as a tool_calls delta after the reasoning
  let think = '', calls = 0;
  for await (const c of await oa.chat.completions.create({ model, messages: user, tools, tool_choice: 'required', max_tokens: 120,
    stream: true, test_script: `<think>${THINK}</think>${CALL}` })) {
    const d = c.choices[0]?.delta ?? {};
    think += d.reasoning_content ?? '';
    calls += d.tool_calls?.length ?? 0;
  }
  check(think === THINK && calls === 1, `required, streamed: ${calls} calls`);
});

await test('chat: thinking budget', async () => {
  const long = 'one two three four five six seven eight nine ten';
  const r = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, thinking_token_budget: 4,
    test_script: `<think>${long}</think>done` });
  const m = r.choices[0].message;
  check(m.reasoning_content && m.reasoning_content.length < long.length && long.startsWith(m.reasoning_content),
        `budget: the block was closed early (${JSON.stringify(m.reasoning_content)})`);
  check(m.content && !m.content.startsWith('<') && m.content.endsWith('done'), `budget: the rest is the answer (${JSON.stringify(m.content)})`);
  // budget 0 / thinking off: a block the model opens is closed at once
  for (const extra of [{ thinking_token_budget: 0 }, { reasoning_effort: 'none' }, { chat_template_kwargs: { enable_thinking: false } }]) {
    const r0 = await oa.chat.completions.create({ model, messages: user, max_tokens: 100, ...extra, test_script: `<think>${long}` });
    check(!r0.choices[0].message.reasoning_content && r0.choices[0].message.content === long,
          `off ${JSON.stringify(extra)}: ${JSON.stringify(r0.choices[0].message)}`);
  }
  await throws(() => oa.chat.completions.create({ model, messages: user, reasoning_effort: 'extreme' }), 400, 'bad reasoning_effort');
  await throws(() => oa.chat.completions.create({ model, messages: user, thinking_token_budget: -2 }), 400, 'bad budget');
  await throws(() => oa.chat.completions.create({ model, messages: user, chat_template_kwargs: { enable_thinking: 'no' } }), 400,
               'bad enable_thinking');
});

await test('chat: earlier thinking in the conversation', async () => {
  // LFM2.5's template renders an assistant turn's thinking only after the last user message (a
  // tool loop); earlier turns lose it
  const count = async (messages) => (await oa.chat.completions.create({ model, messages, max_tokens: 1 })).usage.prompt_tokens;
  const call = { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } };
  const loop = (rc) => [...user, { role: 'assistant', content: '', tool_calls: [call], ...rc }, { role: 'tool', tool_call_id: 'call_1', content: '21' }];
  const earlier = (rc) => [...user, { role: 'assistant', content: 'Paris.', ...rc }, { role: 'user', content: 'And Norway?' }];
  const a = await count(loop({})), b = await count(loop({ reasoning_content: THINK }));
  check(b > a, `tool loop: the thinking is rendered (${a} -> ${b} tokens)`);
  const c = await count(earlier({})), d = await count(earlier({ reasoning_content: THINK }));
  check(c === d, `earlier turn: the thinking is dropped (${c} / ${d} tokens)`);
});

// ---- Responses ----
await test('responses: reasoning items', async () => {
  const r = await oa.responses.create({ model, input: 'capital of France?', max_output_tokens: 100, test_script: SCRIPT });
  check(r.output.map((o) => o.type).join() === 'reasoning,message', `responses: items ${r.output.map((o) => o.type)}`);
  check(r.output[0].content?.[0]?.type === 'reasoning_text' && r.output[0].content[0].text === THINK && r.output_text === 'Paris.',
        'responses: the reasoning text and the answer');
  check(r.usage.output_tokens_details.reasoning_tokens > 10, 'responses: reasoning_tokens');
  const s = await oa.responses.create({ model, input: 'capital of France?', max_output_tokens: 100, test_script: SCRIPT, stream: true });
  const types = [];
  let think = '', text = '', final = null;
  for await (const ev of s) {
    types.push(ev.type);
    if (ev.type === 'response.reasoning_text.delta') think += ev.delta;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') final = ev.response;
  }
  check(think === THINK && text === 'Paris.', 'responses stream: deltas');
  check(types.indexOf('response.reasoning_text.done') < types.indexOf('response.output_text.delta'), 'responses stream: reasoning first');
  check(final && final.output.map((o) => o.type).join() === 'reasoning,message' && final.output[0].content[0].text === THINK,
        'responses stream: the final response');
  // effort none with a schema: no block may open
  await throws(() => oa.responses.create({ model, input: 'x', max_output_tokens: 100, reasoning: { effort: 'none' },
    text: { format: { type: 'json_schema', name: 'w', schema: weather } }, test_script: `<think>a</think>{"city":"Oslo"}` }), 400,
  'responses: effort none');
  // a reasoning item in the input goes back to the template with its turn
  const call = r.output[0];
  const r2 = await oa.responses.create({ model, max_output_tokens: 4, input: [
    { role: 'user', content: 'weather?' }, { type: 'reasoning', id: call.id, summary: [], content: [{ type: 'reasoning_text', text: THINK }] },
    { type: 'function_call', call_id: 'c1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
    { type: 'function_call_output', call_id: 'c1', output: '21' }] });
  const r3 = await oa.responses.create({ model, max_output_tokens: 4, input: [
    { role: 'user', content: 'weather?' },
    { type: 'function_call', call_id: 'c1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
    { type: 'function_call_output', call_id: 'c1', output: '21' }] });
  check(r2.usage.input_tokens > r3.usage.input_tokens, `responses: input reasoning rendered (${r2.usage.input_tokens} vs ${r3.usage.input_tokens})`);
});

// ---- Anthropic Messages ----
const an = new Anthropic({ baseURL: base, apiKey: 'none', maxRetries: 0, timeout: 120000 });

await test('anthropic: thinking blocks', async () => {
  const r = await an.messages.create({ model, max_tokens: 100, messages: user, test_script: SCRIPT,
    thinking: { type: 'enabled', budget_tokens: 60 } });
  check(r.content.map((b) => b.type).join() === 'thinking,text', `anthropic: blocks ${r.content.map((b) => b.type)}`);
  check(r.content[0].thinking === THINK && r.content[1].text === 'Paris.' && r.stop_reason === 'end_turn', 'anthropic: texts');
  const s = an.messages.stream({ model, max_tokens: 100, messages: user, test_script: SCRIPT });
  let think = '', deltas = 0;
  s.on('thinking', (d) => { think += d; deltas++; });
  const m = await s.finalMessage();
  check(think === THINK && deltas >= 1 && m.content[0].type === 'thinking' && m.content[0].thinking === THINK &&
        m.content[1].type === 'text' && m.content[1].text === 'Paris.', `anthropic stream: ${JSON.stringify(m.content)}`);
  // a tool call after the thinking
  const t = await an.messages.create({ model, max_tokens: 120, messages: user, test_script: `<think>${THINK}</think>${CALL}`,
    tools: [{ name: 'get_weather', input_schema: weather }], tool_choice: { type: 'any' } });
  check(t.content.map((b) => b.type).join() === 'thinking,tool_use' && t.content[1].input.city === 'Oslo' && t.stop_reason === 'tool_use',
        `anthropic: tool_use after thinking ${JSON.stringify(t.content)}`);
  // the thinking block sent back in the tool loop reaches the template
  const loop = (blocks) => [...user, { role: 'assistant', content: [...blocks, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Oslo' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '21' }] }];
  const tl = [{ name: 'get_weather', input_schema: weather }];
  const c1 = await an.messages.countTokens({ model, messages: loop([]), tools: tl });
  const c2 = await an.messages.countTokens({ model, messages: loop([{ type: 'thinking', thinking: THINK, signature: '' }]), tools: tl });
  check(c2.input_tokens > c1.input_tokens, `anthropic: thinking block in the tool loop rendered (${c1.input_tokens} -> ${c2.input_tokens})`);
});

await test('anthropic: thinking budget and disabled', async () => {
  const long = 'one two three four five six seven eight nine ten';
  const r = await an.messages.create({ model, max_tokens: 100, messages: user, test_script: `<think>${long}</think>done`,
    thinking: { type: 'enabled', budget_tokens: 4 } });
  check(r.content[0].type === 'thinking' && r.content[0].thinking.length < long.length, `anthropic budget: ${JSON.stringify(r.content)}`);
  const d = await an.messages.create({ model, max_tokens: 100, messages: user, test_script: `<think>${long}`,
    thinking: { type: 'disabled' } });
  check(d.content.map((b) => b.type).join() === 'text' && d.content[0].text === long, `anthropic disabled: ${JSON.stringify(d.content)}`);
  await throws(() => an.messages.create({ model, max_tokens: 100, messages: user, thinking: { type: 'enabled', budget_tokens: 100 } }),
               400, 'anthropic: budget_tokens >= max_tokens');
  await throws(() => an.messages.create({ model, max_tokens: 100, messages: user, thinking: { type: 'sometimes' } }), 400,
               'anthropic: bad thinking type');
});

// ---- Ollama ----
const ol = new Ollama({ host: base });

await test('ollama: thinking', async () => {
  const r = await ol.chat({ model, messages: user, stream: false, test_script: SCRIPT });
  check(r.message.thinking === THINK && r.message.content === 'Paris.', `ollama chat: ${JSON.stringify(r.message)}`);
  let think = '', text = '';
  for await (const p of await ol.chat({ model, messages: user, stream: true, think: true, test_script: SCRIPT })) {
    think += p.message.thinking ?? ''; text += p.message.content;
  }
  check(think === THINK && text === 'Paris.', `ollama chat stream: ${JSON.stringify(think)} / ${JSON.stringify(text)}`);
  const g = await ol.generate({ model, prompt: 'capital?', stream: false, test_script: SCRIPT });
  check(g.thinking === THINK && g.response === 'Paris.', `ollama generate: ${JSON.stringify(g)}`);
  let gt = '';
  for await (const p of await ol.generate({ model, prompt: 'capital?', stream: true, test_script: SCRIPT })) gt += p.thinking ?? '';
  check(gt === THINK, 'ollama generate stream: thinking');
  const off = await ol.chat({ model, messages: user, stream: false, think: false, test_script: '<think>abc def' });
  check(!off.message.thinking && off.message.content === 'abc def', `ollama think:false: ${JSON.stringify(off.message)}`);
  // the thinking of an assistant turn goes back to the template (here in a tool loop)
  const msgs = (th) => [...user, { role: 'assistant', content: '', ...th, tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }] },
    { role: 'tool', content: '21' }];
  const a = await ol.chat({ model, messages: msgs({}), stream: false, options: { num_predict: 1 } });
  const b = await ol.chat({ model, messages: msgs({ thinking: THINK }), stream: false, options: { num_predict: 1 } });
  check(b.prompt_eval_count > a.prompt_eval_count, `ollama: message.thinking rendered (${a.prompt_eval_count} -> ${b.prompt_eval_count})`);
  await throws(() => ol.chat({ model, messages: user, stream: false, think: 'maybe' }), 400, 'ollama: bad think');
});

report();
