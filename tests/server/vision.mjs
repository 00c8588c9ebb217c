// vision.mjs — images through every API of a running `lfm2c serve -m VL_MODEL -mm MMPROJ` (the
// tiny LFM2-VL fixture) with the official clients: OpenAI chat image_url parts (data URLs), the
// Responses API's input_image, Anthropic image blocks (base64) and ollama-js images (chat and
// generate). One image and one text give one prompt, so at temperature 0 every API answers as
// the chat completion does; another image of the same size (the same placeholders) answers
// otherwise and reuses none of the first image's positions, the same image again reuses them and
// answers as before; requests at once equal their solo answers; the refusals (an Ollama 'context'
// holding an image's positions sent back among them).
// usage: node vision.mjs BASE_URL IMAGE_A.png IMAGE_B.png
import fs from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import { check, test, report } from './tally.mjs';

const [base, fileA, fileB] = process.argv.slice(2);
const b64 = (f) => fs.readFileSync(f).toString('base64');
const A = b64(fileA), B = b64(fileB);
const model = 'vl';
const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 });
const text = 'What is in the picture?';
const opts = { model, max_tokens: 8, temperature: 0 };

async function chat(img) {
  const r = await oa.chat.completions.create({ ...opts, messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url: `data:image/png;base64,${img}` } }, { type: 'text', text }] }] });
  return { text: r.choices[0].message.content, usage: r.usage };
}
async function status(fn) {
  try { await fn(); return 200; } catch (e) { return [e.status, e.message]; }
}

let a0, b0;
await test('openai chat image_url', async () => {
  a0 = await chat(A);
  check(a0.text.length > 0 && a0.usage.prompt_tokens > 64, `an answer over ${a0.usage.prompt_tokens} prompt tokens`);
  b0 = await chat(B);
  check(b0.text !== a0.text, 'another image, another answer');
  check(b0.usage.prompt_tokens === a0.usage.prompt_tokens, 'the same placeholders');
  // B after A: at most the positions before the image reused; A again: its image reused
  check(b0.usage.prompt_tokens_details.cached_tokens < 20, `B after A reused ${b0.usage.prompt_tokens_details.cached_tokens}`);
  const a1 = await chat(A);
  check(a1.text === a0.text, 'the same image again, the same answer');
});

await test('requests at once = solo', async () => {
  const got = await Promise.all([chat(A), chat(B), chat(A), chat(B)]);
  check(got.every((g, i) => g.text === (i % 2 ? b0 : a0).text), `batched: ${got.map((g) => g.text.length)}`);
});

await test('responses input_image', async () => {
  const r = await oa.responses.create({ model, max_output_tokens: 8, temperature: 0, input: [{ role: 'user', content: [
    { type: 'input_image', image_url: `data:image/png;base64,${A}` }, { type: 'input_text', text }] }] });
  check(r.output_text === a0.text, `responses: ${JSON.stringify(r.output_text)} vs ${JSON.stringify(a0.text)}`);
});

await test('anthropic image block', async () => {
  const an = new Anthropic({ baseURL: base, apiKey: 'x', maxRetries: 0 });
  const r = await an.messages.create({ model, max_tokens: 8, temperature: 0, messages: [{ role: 'user', content: [
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: A } }, { type: 'text', text }] }] });
  check(r.content[0].text === a0.text, `anthropic: ${JSON.stringify(r.content[0].text)}`);
});

await test('ollama images', async () => {
  const ol = new Ollama({ host: base });
  const r = await ol.chat({ model, messages: [{ role: 'user', content: text, images: [A] }],
    options: { temperature: 0, num_predict: 8 } });
  check(r.message.content === a0.text, `ollama chat: ${JSON.stringify(r.message.content)}`);
  const g = await ol.generate({ model, prompt: text, images: [B], options: { temperature: 0, num_predict: 8 } });
  check(g.response === b0.text, `ollama generate: ${JSON.stringify(g.response)}`);
  // its context holds the image's positions (ids below 0): sent back, a 400 that says what to do
  // (Ollama's own context is text only and carries no image back either)
  check(Array.isArray(g.context) && g.context.some((t) => t < 0), `the context's image ids: ${g.context?.length}`);
  let err = null;
  try {
    await ol.generate({ model, prompt: 'and now?', context: g.context, options: { temperature: 0, num_predict: 4 } });
  } catch (e) { err = e; }
  check(err && (err.status_code ?? err.status) === 400 && /image's positions.*\/api\/chat/.test(err.message),
    `a context with an image sent back: ${err && (err.status_code ?? err.status)} ${err && err.message}`);
  // a context of text only still continues (the image's answer's text ids alone are not refused)
  const t = await ol.generate({ model, prompt: text, options: { temperature: 0, num_predict: 4 } });
  const t2 = await ol.generate({ model, prompt: 'and now?', context: t.context, options: { temperature: 0, num_predict: 4 } });
  check(typeof t2.response === 'string' && t2.prompt_eval_count > t.context.length, `a text context: ${t2.prompt_eval_count}`);
});

await test('refusals', async () => {
  const one = (url) => status(() => oa.chat.completions.create({ ...opts, messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url } }, { type: 'text', text }] }] }));
  let s = await one('https://example.com/cat.png');
  check(s[0] === 400 && /not fetched/.test(s[1]), `an http URL: ${s}`);
  s = await one('data:image/png;base64,bm90IGFuIGltYWdl');
  check(s[0] === 400 && /not a JPEG, PNG, WebP or GIF/.test(s[1]), `not an image: ${s}`);
  // a PNG whose header claims 60000 x 60000 pixels: refused from the header
  const png = fs.readFileSync(fileA);
  png.writeUInt32BE(60000, 16); png.writeUInt32BE(60000, 20);
  let c = ~0;
  for (const byte of png.subarray(12, 29)) { c ^= byte; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xEDB88320 & -(c & 1)); }
  png.writeUInt32BE((~c) >>> 0, 29);
  s = await one(`data:image/png;base64,${png.toString('base64')}`);
  check(s[0] === 400 && /60000 x 60000 pixels is over the limit/.test(s[1]), `a pixel bomb: ${s}`);
  s = await status(() => oa.chat.completions.create({ ...opts, messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url: `data:image/png;base64,${A}` } }, { type: 'image_url', image_url: {} }] }] }));
  check(s[0] === 400 && /image_url.url/.test(s[1]), `an image without a URL: ${s}`);
  // sixteen images of 66 positions each do not fit a context of 1024: refused as they add up (the
  // one that would not fit, from its header, before it is decoded)
  s = await status(() => oa.chat.completions.create({ ...opts, messages: [{ role: 'user', content:
    Array(16).fill({ type: 'image_url', image_url: { url: `data:image/png;base64,${A}` } }) }] }));
  check(s[0] === 400 && /the image would take \d+ positions, more than the \d+ left for it \(this model's context is 1024/.test(s[1]),
    `images over the context: ${s}`);
});

report();
