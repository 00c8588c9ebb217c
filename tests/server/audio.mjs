// audio.mjs — speech through a running `lfm2c serve -m LM -mm AUDIO_MMPROJ` (the tiny LFM2-Audio
// model written by synth: random weights, so the text is noise, seeded) with the official OpenAI
// Node SDK: audio.transcriptions.create in each response_format (json, text, srt, vtt,
// verbose_json), with include logprobs, streamed (transcript.text.delta events, then
// transcript.text.done, in that order, the deltas adding up to the text), audio.translations.create,
// chat input_audio parts (the model card's ASR prompt in chat form gives the transcription's text;
// the same clip again reuses its positions; another clip answers otherwise; clips at once = solo),
// the Responses API's input_file with an audio data URL and its refusal of input_audio, and each
// answer and event judged against OpenAI's OpenAPI schemas (openapi-schemas.json). The transcript of
// clip A equals `lfm2c transcribe` of it at temperature 0 (EXPECTED, written by the test script).
// usage: node audio.mjs BASE_URL A.wav B.wav C.mp3 EXPECTED MAX_TOKENS
import fs from 'node:fs';
import OpenAI, { toFile } from 'openai';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { check, test, report } from './tally.mjs';

const [base, fileA, fileB, fileC, expectedFile, maxTok] = process.argv.slice(2);
const max_tokens = Number(maxTok);
const expected = fs.readFileSync(expectedFile, 'utf8').replace(/\n$/, '');
const A = fs.readFileSync(fileA), B = fs.readFileSync(fileB), C = fs.readFileSync(fileC);
const model = 'au';
const oa = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0, timeout: 120000 });

// ---- OpenAI's schemas (as openapi.mjs reads them; these need none of its relaxations) ---------------
const doc = JSON.parse(fs.readFileSync(new URL('./openapi-schemas.json', import.meta.url), 'utf8'));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('float', { type: 'number', validate: (n) => Number.isFinite(n) });
ajv.addSchema({ components: doc.components }, 'openapi');
function conforms(name, value, what) {
  const v = ajv.getSchema(`openapi#/components/schemas/${name}`);
  const ok = v(value);
  check(ok, `${what} does not conform to ${name}: ${ajv.errorsText(v.errors)} in ${JSON.stringify(value).slice(0, 400)}`);
}

const file = (buf, name) => toFile(buf, name);
const tr = async (buf, extra = {}, name = 'a.wav') =>
  oa.audio.transcriptions.create({ file: await file(buf, name), model, max_tokens, ...extra });
async function status(fn) {
  try { await fn(); return [200, '']; } catch (e) { return [e.status, String(e.message)]; }
}

let text, seconds;
await test('transcriptions json = lfm2c transcribe', async () => {
  const r = await tr(A);
  conforms('CreateTranscriptionResponseJson', r, 'json');
  text = r.text;
  check(r.text === expected, `the server's ${JSON.stringify(r.text)} vs transcribe's ${JSON.stringify(expected)}`);
  check(r.usage.type === 'tokens' && r.usage.input_token_details.audio_tokens > 5 && r.usage.output_tokens <= max_tokens &&
    r.usage.total_tokens === r.usage.input_tokens + r.usage.output_tokens, `usage ${JSON.stringify(r.usage)}`);
});

await test('text, srt, vtt, verbose_json', async () => {
  const t = await tr(A, { response_format: 'text' });
  check(t === text, `text: ${JSON.stringify(t)}`);
  const v = await tr(A, { response_format: 'verbose_json', timestamp_granularities: ['segment'] });
  conforms('CreateTranscriptionResponseVerboseJson', v, 'verbose_json');
  seconds = v.duration;
  check(Math.abs(v.duration - 1.0) < 0.01 && v.text === text && v.segments.length === 1 && v.segments[0].start === 0 &&
    v.segments[0].end === v.duration && v.segments[0].text === text && v.language === 'english', `verbose ${JSON.stringify(v).slice(0, 300)}`);
  check(v.segments[0].tokens.length > 0 && v.segments[0].tokens.length <= max_tokens && v.segments[0].avg_logprob < 0,
    `the segment's tokens and mean log-probability ${JSON.stringify(v.segments[0]).slice(0, 200)}`);
  const srt = await tr(A, { response_format: 'srt' });
  check(srt === `1\n00:00:00,000 --> 00:00:01,000\n${text}\n\n`, `srt ${JSON.stringify(srt)}`);
  const vtt = await tr(A, { response_format: 'vtt' });
  check(vtt === `WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n${text}\n\n`, `vtt ${JSON.stringify(vtt)}`);
  const l = await tr(A, { language: 'en', include: ['logprobs'] });
  check(l.text === text && l.logprobs.length === l.usage.output_tokens && l.logprobs.every((x) => x.logprob <= 0),
    `include logprobs: ${l.logprobs?.length} entries`);
  conforms('CreateTranscriptionResponseJson', l, 'json with logprobs');
});

await test('stream: deltas, then done', async () => {
  const s = await tr(A, { stream: true });
  const ev = [];
  for await (const e of s) ev.push(e);
  const deltas = ev.filter((e) => e.type === 'transcript.text.delta');
  check(ev.length >= 2 && ev.at(-1).type === 'transcript.text.done' && deltas.length === ev.length - 1,
    `event order: ${ev.map((e) => e.type)}`);
  for (const e of ev) conforms('CreateTranscriptionResponseStreamEvent', e, e.type);
  check(deltas.map((e) => e.delta).join('') === text && ev.at(-1).text === text, 'the deltas add up to the text');
  check(ev.at(-1).usage?.output_tokens <= max_tokens, `done's usage ${JSON.stringify(ev.at(-1).usage)}`);
});

await test('translations', async () => {
  const t = await oa.audio.translations.create({ file: await file(A, 'a.wav'), model, max_tokens });
  conforms('CreateTranslationResponseJson', t, 'translation');
  check(t.text === text, `a translation is the (English) transcript: ${JSON.stringify(t.text)}`);
  const v = await oa.audio.translations.create({ file: await file(A, 'a.wav'), model, max_tokens, response_format: 'verbose_json' });
  conforms('CreateTranslationResponseVerboseJson', v, 'verbose translation');
  check(v.task === 'translate' && v.language === 'english', `verbose translation ${v.task} ${v.language}`);
});

const asr = (b64) => ({
  model, max_tokens, temperature: 0, messages: [{ role: 'system', content: 'Perform ASR.' },
    { role: 'user', content: [{ type: 'input_audio', input_audio: { data: b64, format: 'wav' } }] }],
});
let chatA, chatB;
await test('chat input_audio', async () => {
  const r = await oa.chat.completions.create(asr(A.toString('base64')));
  chatA = r.choices[0].message.content;
  check(chatA === text, `chat with the ASR prompt ${JSON.stringify(chatA)} = the transcription ${JSON.stringify(text)}`);
  const again = await oa.chat.completions.create(asr(A.toString('base64')));
  check(again.choices[0].message.content === chatA && again.usage.prompt_tokens_details.cached_tokens >= again.usage.prompt_tokens - 1,
    `the same clip again: its positions reused (${again.usage.prompt_tokens_details.cached_tokens} of ${again.usage.prompt_tokens})`);
  const rb = await oa.chat.completions.create(asr(B.toString('base64')));
  chatB = rb.choices[0].message.content;
  check(chatB !== chatA, 'another clip, another answer');
  check(rb.usage.prompt_tokens_details.cached_tokens < 40, `B after A reused ${rb.usage.prompt_tokens_details.cached_tokens}`);
  const mp3 = await tr(C, {}, 'c.mp3');
  check(typeof mp3.text === 'string' && mp3.usage.input_token_details.audio_tokens > 5, `an MP3: ${mp3.usage.input_token_details.audio_tokens} audio tokens`);
  const url = await oa.chat.completions.create({ ...asr(`data:audio/wav;base64,${A.toString('base64')}`) });
  check(url.choices[0].message.content === chatA, 'input_audio data as a data URL');
  const s = await oa.chat.completions.create({ ...asr(A.toString('base64')), stream: true });
  let st = '';
  for await (const c of s) st += c.choices[0]?.delta?.content ?? '';
  check(st === chatA, 'streamed chat with input_audio');
});

await test('clips at once = solo', async () => {
  const got = await Promise.all([A, B, A, B].map((x) => oa.chat.completions.create(asr(x.toString('base64')))));
  check(got.every((g, i) => g.choices[0].message.content === (i % 2 ? chatB : chatA)), 'batched answers equal the solo ones');
  const ts = await Promise.all([tr(A), tr(B), tr(A)]);
  check(ts[0].text === text && ts[2].text === text && ts[1].text === chatB, 'transcriptions at once');
});

await test('responses: input_file audio; input_audio refused', async () => {
  const r = await oa.responses.create({ model, max_output_tokens: max_tokens, temperature: 0, instructions: 'Perform ASR.', input: [
    { role: 'user', content: [{ type: 'input_file', filename: 'a.wav', file_data: `data:audio/wav;base64,${A.toString('base64')}` }] }] });
  check(r.output_text === text, `responses input_file: ${JSON.stringify(r.output_text)}`);
  const [s, m] = await status(() => oa.responses.create({ model, input: [{ role: 'user', content: [
    { type: 'input_audio', input_audio: { data: A.toString('base64'), format: 'wav' } }] }] }));
  check(s === 400 && /input_file/.test(m), `responses input_audio -> ${s} ${m}`);
  const [s2, m2] = await status(() => oa.responses.create({ model, input: [{ role: 'user', content: [
    { type: 'input_file', file_id: 'file-123' }] }] }));
  check(s2 === 400 && /inline/.test(m2), `responses input_file by id -> ${s2} ${m2}`);
});

await test('refusals through the SDK', async () => {
  for (const [extra, want] of [[{ response_format: 'diarized_json' }, /speakers/], [{ timestamp_granularities: ['word'] }, /word timestamps/],
    [{ response_format: 'srt', stream: true }, /stream/], [{ temperature: 3 }, /temperature/]]) {
    const [s, m] = await status(() => tr(A, extra));
    check(s === 400 && want.test(m), `${JSON.stringify(extra)} -> ${s} ${m}`);
  }
  const [s, m] = await status(() => tr(Buffer.from('not audio at all')));
  check(s === 400 && /not an audio file/.test(m), `not audio -> ${s} ${m}`);
  const [s2, m2] = await status(() => oa.chat.completions.create({ model, messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url: `data:image/png;base64,${fs.readFileSync('../data/vision/images/rgb.png').toString('base64')}` } }] }] }));
  check(s2 === 400 && /audio encoder/.test(m2), `an image to an audio model -> ${s2} ${m2}`);
  const [s3, m3] = await status(() => oa.chat.completions.create({ model, messages: [{ role: 'user', content: [
    { type: 'input_audio', input_audio: { data: A.toString('base64'), format: 'aiff' } }] }] }));
  check(s3 === 400 && /format/.test(m3), `an unknown format -> ${s3} ${m3}`);
});
if (seconds === undefined) check(false, 'verbose_json gave no duration');
report();
