// agents.mjs — drives a running `lfm2c serve` with the agent libraries people build on: the Vercel
// AI SDK (`ai` + `@ai-sdk/openai-compatible`) and LangChain JS (`@langchain/openai`), with zod
// schemas as those libraries' users write them.
// usage: node agents.mjs BASE_URL API_KEY MODEL_ID
// The fixture models have random weights: the checks are about what the libraries receive (valid
// tool calls and objects, finish reasons, usage, logprobs, errors), never about what the text says.
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, streamText, tool, Output, stepCountIs, NoObjectGeneratedError } from 'ai';
import { ChatOpenAI } from '@langchain/openai';
import { tool as lcTool } from '@langchain/core/tools';
import OpenAI from 'openai';
import { zodResponseFormat, zodFunction } from 'openai/helpers/zod';
import { z } from 'zod';
import { check, test, report } from '../server/tally.mjs';

const [base, apiKey, modelId] = process.argv.slice(2);

// What zod users write: .int() adds minimum/maximum, .nullable() becomes anyOf, .email()/.regex()
// become format/pattern, .optional() drops the key from `required`.
const Weather = z.object({
  city: z.string().min(1).max(16),
  unit: z.enum(['celsius', 'fahrenheit']).optional(),
  days: z.number().int().min(1).max(7),
  note: z.string().max(10).nullable(),
});
const Contact = z.object({
  name: z.string().max(12),
  email: z.email().max(30),
  code: z.string().regex(/^[A-Z]{2}-\d{3}$/),
  tags: z.array(z.string().max(6)).max(3),
});

// ---- Vercel AI SDK ------------------------------------------------------------------------------
const provider = createOpenAICompatible({ name: 'lfm2c', baseURL: `${base}/v1`, apiKey, includeUsage: true,
  supportsStructuredOutputs: true });
const vmodel = provider.chatModel(modelId);
const seen = []; // the tool inputs each execute() received
const weatherTool = tool({
  description: 'Weather forecast for a city',
  inputSchema: Weather,
  execute: async (input) => { seen.push(input); return { forecast: 'sunny', city: input.city }; },
});

await test('ai: generateText', async () => {
  const r = await generateText({ model: vmodel, prompt: 'Say hello.', maxOutputTokens: 8, temperature: 0, maxRetries: 0 });
  check(typeof r.text === 'string' && r.text.length > 0, 'ai: text');
  check(r.finishReason === 'length', `ai: finishReason length (${r.finishReason})`);
  check(r.usage.outputTokens === 8 && r.usage.inputTokens > 0, `ai: usage (${JSON.stringify(r.usage)})`);
});

await test('ai: streamText', async () => {
  const r = streamText({ model: vmodel, prompt: 'Count to five.', maxOutputTokens: 10, temperature: 0, maxRetries: 0 });
  let text = '';
  for await (const d of r.textStream) text += d;
  const plain = await generateText({ model: vmodel, prompt: 'Count to five.', maxOutputTokens: 10, temperature: 0, maxRetries: 0 });
  check(text === plain.text, 'ai: the stream spells the same text as the plain call');
  check((await r.usage).outputTokens === 10, 'ai: streamed usage');
});

await test('ai: a forced tool call runs the tool with valid input, then the loop answers', async () => {
  seen.length = 0;
  const r = await generateText({ model: vmodel, prompt: 'Weather in Paris for 3 days?', tools: { weather: weatherTool },
    toolChoice: { type: 'tool', toolName: 'weather' }, maxOutputTokens: 600, temperature: 0, maxRetries: 0,
    stopWhen: stepCountIs(1) });
  const calls = r.toolCalls;
  check(calls.length >= 1 && calls.every((c) => c.toolName === 'weather'), `ai: tool calls (${JSON.stringify(calls)})`);
  check(seen.length === calls.length && seen.every((x) => Weather.safeParse(x).success),
    `ai: every executed input satisfies the zod schema (${JSON.stringify(seen)})`);
  check(r.finishReason === 'tool-calls', `ai: finishReason tool-calls (${r.finishReason})`);
  // the round trip: the tool result goes back, the model answers in text
  const r2 = await generateText({ model: vmodel, prompt: 'Weather in Paris for 3 days?', tools: { weather: weatherTool },
    toolChoice: 'required', maxOutputTokens: 600, temperature: 0, maxRetries: 0, stopWhen: stepCountIs(2),
    prepareStep: ({ stepNumber }) => (stepNumber === 1 ? { toolChoice: 'none' } : {}) });
  check(r2.steps.length === 2 && r2.steps[0].toolResults.length >= 1, `ai: two steps, the first with tool results (${r2.steps.length})`);
  check(r2.steps[1].toolCalls.length === 0, 'ai: the second step (toolChoice none) calls nothing');
});

await test('ai: streamed tool call', async () => {
  seen.length = 0;
  const r = streamText({ model: vmodel, prompt: 'Weather in Oslo?', tools: { weather: weatherTool }, toolChoice: 'required',
    maxOutputTokens: 600, temperature: 0, maxRetries: 0, stopWhen: stepCountIs(1) });
  const parts = [];
  for await (const p of r.fullStream) parts.push(p.type);
  const calls = await r.toolCalls;
  check(calls.length >= 1 && seen.length === calls.length && seen.every((x) => Weather.safeParse(x).success),
    `ai: streamed call inputs satisfy the schema (${JSON.stringify(seen)})`);
  check(parts.includes('tool-call') && parts.includes('tool-result'), `ai: stream parts (${[...new Set(parts)]})`);
});

await test('ai: a tool call cut by maxOutputTokens is not run', async () => {
  seen.length = 0;
  // the SDK either reports the cut answer (finish "length", no calls) or refuses it as a
  // violation of toolChoice "required"; either way the tool never runs on invented input
  let r = null, err = null;
  try {
    r = await generateText({ model: vmodel, prompt: 'Weather?', tools: { weather: weatherTool }, toolChoice: 'required',
      maxOutputTokens: 3, temperature: 0, maxRetries: 0, stopWhen: stepCountIs(1) });
  } catch (e) { err = e; }
  check(seen.length === 0, `ai: a cut call is never executed (${seen.length} runs)`);
  if (err) check(err.finishReason === 'length' && (err.content || []).length === 0, `ai: the cut answer is reported as such (${err.name}, ${err.finishReason})`);
  else {
    check(r.finishReason === 'length' && r.toolCalls.length === 0, `ai: cut call: finish ${r.finishReason}, ${r.toolCalls.length} calls`);
    check(!r.text.includes('<|tool_call_start|>'), 'ai: no raw special tokens in the text');
    check(r.usage.outputTokens <= 3, `ai: maxOutputTokens is a hard bound (${r.usage.outputTokens})`);
  }
});

await test('ai: structured output (Output.object with zod)', async () => {
  const r = await generateText({ model: vmodel, prompt: 'A contact card.', output: Output.object({ schema: Contact }),
    maxOutputTokens: 300, temperature: 0.5, maxRetries: 0 });
  check(Contact.safeParse(r.output).success, `ai: the object satisfies the zod schema (${JSON.stringify(r.output)})`);
  const s = streamText({ model: vmodel, prompt: 'Weather object.', output: Output.object({ schema: Weather }),
    maxOutputTokens: 300, temperature: 0.5, maxRetries: 0 });
  for await (const _ of s.partialOutputStream) { /* drain */ }
  check(Weather.safeParse(await s.output).success, 'ai: streamed object satisfies the schema');
  // cut short: the library reports that no object was generated (nothing invented)
  try {
    await generateText({ model: vmodel, prompt: 'x', output: Output.object({ schema: Contact }), maxOutputTokens: 2, maxRetries: 0 });
    check(false, 'ai: a cut object must not parse');
  } catch (e) { check(NoObjectGeneratedError.isInstance(e) && e.finishReason === 'length', `ai: cut object: ${e.name} ${e.finishReason}`); }
});

await test('ai: errors', async () => {
  const other = createOpenAICompatible({ name: 'lfm2c', baseURL: `${base}/v1`, apiKey }).chatModel('no-such-model');
  try { await generateText({ model: other, prompt: 'x', maxRetries: 0 }); check(false, 'ai: unknown model must fail'); }
  catch (e) { check(e.statusCode === 404, `ai: unknown model is 404 (${e.statusCode})`); }
  const bad = createOpenAICompatible({ name: 'lfm2c', baseURL: `${base}/v1`, apiKey: 'wrong' }).chatModel(modelId);
  try { await generateText({ model: bad, prompt: 'x', maxRetries: 0 }); check(false, 'ai: wrong key must fail'); }
  catch (e) { check(e.statusCode === 401, `ai: wrong key is 401 (${e.statusCode})`); }
});

// ---- LangChain JS -------------------------------------------------------------------------------
const lc = (extra = {}) => new ChatOpenAI({ model: modelId, apiKey, configuration: { baseURL: `${base}/v1` }, maxRetries: 0,
  temperature: 0, maxTokens: 200, ...extra });

await test('langchain: invoke and stream', async () => {
  const m = lc({ maxTokens: 8 });
  const r = await m.invoke('Say hello.');
  check(typeof r.content === 'string' && r.content.length > 0, 'langchain: content');
  check(r.response_metadata.finish_reason === 'length', `langchain: finish_reason (${r.response_metadata.finish_reason})`);
  check(r.usage_metadata && r.usage_metadata.output_tokens === 8, `langchain: usage (${JSON.stringify(r.usage_metadata)})`);
  let text = '';
  for await (const ch of await m.stream('Say hello.')) text += ch.content;
  check(text === r.content, 'langchain: the stream spells the same text');
});

const lcWeather = lcTool(async (input) => JSON.stringify({ forecast: 'rain', city: input.city }),
  { name: 'weather', description: 'Weather forecast for a city', schema: Weather });

await test('langchain: bindTools', async () => {
  const m = lc({ maxTokens: 600 }).bindTools([lcWeather], { tool_choice: 'any' });
  const r = await m.invoke('Weather in Rome?');
  check(r.tool_calls.length >= 1 && r.tool_calls.every((c) => c.name === 'weather' && Weather.safeParse(c.args).success),
    `langchain: tool_calls with valid args (${JSON.stringify(r.tool_calls)})`);
  check((r.invalid_tool_calls || []).length === 0, 'langchain: no invalid tool calls');
  // round trip: the ToolMessage goes back and the model answers
  const out = await lcWeather.invoke(r.tool_calls[0]);
  const r2 = await lc({ maxTokens: 20 }).bindTools([lcWeather], { tool_choice: 'none' }).invoke(
    [{ role: 'user', content: 'Weather in Rome?' }, r, out]);
  check(typeof r2.content === 'string' && r2.tool_calls.length === 0, 'langchain: the answer after the tool result is text');
  // named tool, streamed
  const named = lc({ maxTokens: 600 }).bindTools([lcWeather], { tool_choice: 'weather' });
  let acc;
  for await (const ch of await named.stream('Weather in Lima?')) acc = acc ? acc.concat(ch) : ch;
  check(acc.tool_calls.length >= 1 && acc.tool_calls.every((c) => Weather.safeParse(c.args).success),
    `langchain: streamed named tool call (${JSON.stringify(acc.tool_calls)})`);
});

await test('langchain: withStructuredOutput', async () => {
  for (const method of ['jsonSchema', 'functionCalling']) {
    const m = lc({ temperature: 0.5, maxTokens: 300 }).withStructuredOutput(Contact, { name: 'contact', method });
    const r = await m.invoke('A contact card.');
    check(Contact.safeParse(r).success, `langchain ${method}: the object satisfies the schema (${JSON.stringify(r)})`);
  }
});

await test('langchain: logprobs, n', async () => {
  const m = lc({ maxTokens: 12, logprobs: true, topLogprobs: 3, temperature: 0.8 });
  const r = await m.invoke('Write some emoji and Chinese: 🙂 你好');
  const lp = r.response_metadata.logprobs;
  check(lp && lp.content.length === r.usage_metadata.output_tokens, `langchain: one logprob entry per token (${lp && lp.content.length})`);
  check(lp && lp.content.every((e) => e.top_logprobs.length === 3 && Array.isArray(e.bytes)), 'langchain: top_logprobs and bytes');
  const many = await lc({ maxTokens: 4, n: 3, temperature: 1 }).generate([[{ role: 'user', content: 'hi' }]]);
  check(many.generations[0].length === 3, `langchain: n=3 gives 3 generations (${many.generations[0].length})`);
});

// ---- the openai SDK's own helpers (parse, runTools, stream) ------------------------------------
// its strict mode wants every property required (optional ones nullable), checked client-side
const WeatherStrict = z.object({ city: z.string().min(1).max(16), unit: z.enum(['celsius', 'fahrenheit']).nullable(),
  days: z.number().int().min(1).max(7) });
const oai = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });

await test('openai: chat.completions.parse with zodResponseFormat', async () => {
  const r = await oai.chat.completions.parse({ model: modelId, messages: [{ role: 'user', content: 'A contact.' }],
    response_format: zodResponseFormat(Contact, 'contact'), max_tokens: 300, temperature: 0.5 });
  const m = r.choices[0].message;
  check(m.parsed && Contact.safeParse(m.parsed).success, `openai parse: message.parsed validates (${JSON.stringify(m.parsed)})`);
  const t = await oai.chat.completions.parse({ model: modelId, messages: [{ role: 'user', content: 'Weather?' }],
    tools: [zodFunction({ name: 'weather', parameters: WeatherStrict })], tool_choice: 'required', parallel_tool_calls: false,
    max_tokens: 300, temperature: 0 });
  const call = t.choices[0].message.tool_calls?.[0];
  check(call && WeatherStrict.safeParse(call.function.parsed_arguments).success, `openai parse: strict tool call parsed_arguments validate (${JSON.stringify(call?.function)})`);
});

await test('openai: runTools runs the tool and finishes', async () => {
  const ran = [];
  const runner = oai.chat.completions.runTools({ model: modelId, messages: [{ role: 'user', content: 'Weather in Kyiv?' }],
    tools: [{ type: 'function', function: { name: 'weather', parameters: z.toJSONSchema(Weather),
      function: (args) => { ran.push(args); return { forecast: 'snow' }; }, parse: JSON.parse } }],
    tool_choice: 'required', parallel_tool_calls: false, max_tokens: 300, temperature: 0 }, { maxChatCompletions: 1 });
  const content = await runner.finalContent().catch(() => null);
  check(ran.length >= 1 && ran.every((a) => Weather.safeParse(a).success), `openai runTools: the tool ran with valid args (${JSON.stringify(ran)})`);
  const msgs = runner.messages;
  check(msgs.some((m) => m.role === 'tool'), 'openai runTools: the tool result is in the conversation');
  void content;
});

await test('openai: chat.completions.stream helper', async () => {
  const st = oai.chat.completions.stream({ model: modelId, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0,
    stream_options: { include_usage: true } });
  let deltas = '';
  st.on('content', (d) => { deltas += d; });
  const fin = await st.finalChatCompletion();
  check(fin.choices[0].message.content === deltas && fin.usage?.completion_tokens === 8, 'openai stream helper: content events and the final completion agree');
  const ts = oai.chat.completions.stream({ model: modelId, messages: [{ role: 'user', content: 'Weather?' }],
    tools: [zodFunction({ name: 'weather', parameters: WeatherStrict })], tool_choice: 'required', parallel_tool_calls: false, max_tokens: 300, temperature: 0 });
  let doneArgs = null;
  ts.on('tool_calls.function.arguments.done', (e) => { doneArgs = e.parsed_arguments; });
  await ts.finalChatCompletion();
  check(doneArgs && WeatherStrict.safeParse(doneArgs).success, `openai stream helper: the streamed tool call parses (${JSON.stringify(doneArgs)})`);
});

report();
