#!/usr/bin/env python3
"""fidelity.py — what clients ask for is honoured, or refused with a 4xx naming the field, never
silently dropped (issue 36, the failures real client libraries found), on a running `lfm2c serve`
with the fixture model: fresh sampler seeds per request without a 'seed' (OpenAI chat, legacy
completions, Ollama /api/chat), Anthropic structured output (output_config.format, output_format),
Responses item_reference input items and logprobs (include / top_logprobs, streamed too), Ollama's
flat named tool_choice and /api/generate 'context', fill-in-the-middle 'suffix' on
/v1/completions and /api/generate alike, vLLM's structured outputs (structured_outputs and the
older guided_* fields: a JSON schema, a regex, a choice) on chat and legacy completions.
usage: python3 fidelity.py BASE_URL API_KEY"""
import http.client
import json
import sys
import urllib.parse

base, key = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(base)
passed = failed = 0


def req(method, path, body=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, text


def served_model():
    """The server's (first) model id: requests of every API name it (another name is a 404)."""
    s, t = req("GET", "/v1/models")
    return json.loads(t)["data"][0]["id"]


def jreq(path, body):
    s, t = req("POST", path, body)
    try:
        return s, json.loads(t)
    except ValueError:
        return s, t


def sse(text):
    """[(event, data)] of an SSE body."""
    out, ev = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: ") and line[6:] != "[DONE]":
            out.append((ev, json.loads(line[6:])))
    return out


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL " + what, file=sys.stderr)


def param_of(t):
    return t.get("error", {}).get("param") if isinstance(t, dict) and isinstance(t.get("error"), dict) else None


MODEL = served_model()
user = [{"role": "user", "content": "Tell me something."}]

# ---- sampling without a seed: every request draws its own ----------------------------------------
N = 12
answers = []
for _ in range(N):
    s, t = jreq("/v1/chat/completions", {"messages": user, "max_tokens": 8, "temperature": 1})
    answers.append(t["choices"][0]["message"]["content"] if s == 200 else None)
check(None not in answers and len(set(answers)) >= N - 1, "chat without seed: %d distinct of %d" % (len(set(answers)), N))
same = [jreq("/v1/chat/completions", {"messages": user, "max_tokens": 8, "temperature": 1, "seed": 42})[1]
        ["choices"][0]["message"]["content"] for _ in range(3)]
check(len(set(same)) == 1, "chat with a seed still repeats itself: %r" % same)
answers = []
for _ in range(N):
    s, t = jreq("/v1/completions", {"prompt": "Once upon", "max_tokens": 8, "temperature": 1})
    answers.append(t["choices"][0]["text"] if s == 200 else None)
check(None not in answers and len(set(answers)) >= N - 1, "completions without seed: %d distinct of %d" % (len(set(answers)), N))
answers = []
for _ in range(N):
    s, t = jreq("/api/chat", {"model": MODEL, "messages": user, "stream": False, "options": {"num_predict": 8, "temperature": 1}})
    answers.append(t["message"]["content"] if s == 200 else None)
check(None not in answers and len(set(answers)) >= N - 1, "/api/chat without seed: %d distinct of %d" % (len(set(answers)), N))

# ---- Anthropic structured output ------------------------------------------------------------------
schema = {"type": "object", "properties": {"pick": {"type": "string", "enum": ["a", "b"]}, "ok": {"type": "boolean"}},
          "required": ["pick", "ok"], "additionalProperties": False}


def valid(text):
    try:
        v = json.loads(text)
    except ValueError:
        return False
    return isinstance(v, dict) and set(v) == {"pick", "ok"} and v["pick"] in ("a", "b") and isinstance(v["ok"], bool)


for field, val in (("output_config", {"format": {"type": "json_schema", "schema": schema}}),
                   ("output_format", {"type": "json_schema", "schema": schema})):
    s, t = jreq("/v1/messages", {"model": MODEL, "max_tokens": 200, "messages": user, field: val})
    text = t["content"][0]["text"] if s == 200 else ""
    check(s == 200 and valid(text), "anthropic %s: constrained answer (%d %r)" % (field, s, text[:200]))
    s, t = req("POST", "/v1/messages", {"model": MODEL, "max_tokens": 200, "messages": user, field: val, "stream": True})
    text = "".join(d["delta"]["text"] for e, d in sse(t) if e == "content_block_delta" and d["delta"]["type"] == "text_delta")
    check(s == 200 and valid(text), "anthropic %s streamed: constrained answer (%r)" % (field, text[:200]))
s, t = jreq("/v1/messages", {"max_tokens": 10, "messages": user, "output_config": {"format": {"type": "regex", "pattern": "a+"}}})
check(s == 400 and "output_config.format" in t["error"]["message"], "anthropic unknown format -> 400 naming it (%d)" % s)
s, t = jreq("/v1/messages", {"max_tokens": 10, "messages": user, "output_format": {"type": "json_schema"}})
check(s == 400 and "output_format" in t["error"]["message"], "anthropic output_format without schema -> 400 (%d)" % s)

# ---- vLLM's structured outputs: structured_outputs {json | regex | choice | json_object}, guided_* ----
import re as _re
RX = r"[A-Z][a-z]{1,6} (\d{2}|n/a)"
CHOICES = ["positive", "negative", "it's \"mixed\"", "ünïcödé"]


def text_of(path, t):
    return t["choices"][0]["message"]["content"] if path.endswith("chat/completions") else t["choices"][0]["text"]


def streamed(path, t):
    out = ""
    for _, d in sse(t):
        for c in d.get("choices") or []:
            out += (c.get("delta") or {}).get("content") or "" if path.endswith("chat/completions") else c.get("text") or ""
    return out


for path, base_body in (("/v1/chat/completions", {"messages": user}), ("/v1/completions", {"prompt": "Once upon"})):
    cases = [("structured_outputs.regex", {"structured_outputs": {"regex": RX}}, lambda x: _re.fullmatch(RX, x)),
             ("guided_regex", {"guided_regex": RX}, lambda x: _re.fullmatch(RX, x)),
             ("structured_outputs.choice", {"structured_outputs": {"choice": CHOICES}}, lambda x: x in CHOICES),
             ("guided_choice", {"guided_choice": CHOICES}, lambda x: x in CHOICES),
             ("structured_outputs.json", {"structured_outputs": {"json": schema}}, valid),
             ("guided_json (schema text)", {"guided_json": json.dumps(schema)}, valid),
             ("structured_outputs.json_object", {"structured_outputs": {"json_object": True}, "max_tokens": 12},
              lambda x: x.startswith("{"))]  # any object: a random model's may run to max_tokens
    for name, extra, ok in cases:
        for seed in (1, 2, 3):
            body = dict(dict(base_body, max_tokens=200, temperature=1, seed=seed), **extra)
            s, t = jreq(path, body)
            x = text_of(path, t) if s == 200 else None
            fin = t["choices"][0]["finish_reason"] if s == 200 else None
            try:
                good = x is not None and (fin == "stop" or "json_object" in name) and bool(ok(x))
            except ValueError:
                good = False
            check(good, "%s %s seed %d: a whole match (%d %s %r)" % (path, name, seed, s, fin, x))
        s, t = req("POST", path, dict(dict(base_body, max_tokens=200, temperature=1, seed=9, stream=True), **extra))
        x = streamed(path, t) if s == 200 else None
        try:
            good = x is not None and bool(ok(x))
        except ValueError:
            good = False
        check(good, "%s %s streamed: a whole match (%d %r)" % (path, name, s, x))
    # what cannot be enforced, or is malformed, is a 400 naming the field
    for name, extra, field in (
            ("grammar", {"structured_outputs": {"grammar": "root ::= \"a\""}}, "structured_outputs.grammar"),
            ("guided_grammar", {"guided_grammar": "root ::= \"a\""}, "guided_grammar"),
            ("structural_tag", {"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag"),
            ("two constraints", {"structured_outputs": {"regex": "a"}, "guided_choice": ["b"]}, "guided_choice"),
            ("bad regex", {"guided_regex": "(a"}, "guided_regex"),
            ("backreference", {"structured_outputs": {"regex": "(a)\\1"}}, "structured_outputs.regex"),
            ("empty choice list", {"guided_choice": []}, "guided_choice"),
            ("choice not strings", {"structured_outputs": {"choice": ["a", 1]}}, "structured_outputs.choice"),
            ("bad schema", {"structured_outputs": {"json": {"type": "nope"}}}, "structured_outputs.json"),
            ("not an object", {"structured_outputs": "regex"}, "structured_outputs")):
        s, t = jreq(path, dict(base_body, max_tokens=8, **extra))
        check(s == 400 and param_of(t) == field, "%s %s -> 400 naming %s (%d %r)" % (path, name, field, s, param_of(t)))
s, t = jreq("/v1/chat/completions", {"messages": user, "max_tokens": 8, "guided_regex": "a+",
                                     "response_format": {"type": "json_object"}})
check(s == 400 and param_of(t) == "guided_regex", "guided_regex with response_format -> 400 (%d)" % s)
s, t = jreq("/v1/chat/completions", {"messages": user, "max_tokens": 8, "structured_outputs": {"json_object": False}})
check(s == 200, "json_object false constrains nothing (%d)" % s)

# ---- Responses: item_reference, logprobs -------------------------------------------------------------
s, first = jreq("/v1/responses", {"input": "Hello there", "max_output_tokens": 6})
msg_id = first["output"][0]["id"] if s == 200 else "none"
base_in = [{"role": "user", "content": "Hello there"}]
s, plain = jreq("/v1/responses", {"input": base_in + [{"role": "user", "content": "And?"}], "max_output_tokens": 2})
s2, ref = jreq("/v1/responses", {"input": base_in + [{"type": "item_reference", "id": msg_id}, {"role": "user", "content": "And?"}],
                                 "max_output_tokens": 2})
check(s == 200 and s2 == 200 and ref["usage"]["input_tokens"] > plain["usage"]["input_tokens"],
      "item_reference: the referenced message is in the prompt (%d %d)" % (s2, ref.get("usage", {}).get("input_tokens", -1) if isinstance(ref, dict) else -1))
s3, bare = jreq("/v1/responses", {"input": base_in + [{"id": msg_id}, {"role": "user", "content": "And?"}], "max_output_tokens": 2})
check(s3 == 200 and bare["usage"]["input_tokens"] == ref["usage"]["input_tokens"], "a reference without 'type' (%d)" % s3)
s4, byresp = jreq("/v1/responses", {"input": base_in + [{"type": "item_reference", "id": first.get("id", "x")},
                                                       {"role": "user", "content": "And?"}], "max_output_tokens": 2})
check(s4 == 200 and byresp["usage"]["input_tokens"] == ref["usage"]["input_tokens"], "a reference to a response id (%d)" % s4)
# a function call item referenced: the call and its output make a valid conversation
weather = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}}, "required": ["city"],
           "additionalProperties": False}
tools = [{"type": "function", "name": "get_time", "parameters": weather}]
s, called = jreq("/v1/responses", {"input": "What time is it?", "tools": tools, "tool_choice": "required", "max_output_tokens": 200})
fc = [o for o in called.get("output", []) if o["type"] == "function_call"] if s == 200 else []
if fc:
    s, t = jreq("/v1/responses", {"input": [{"role": "user", "content": "What time is it?"}, {"type": "item_reference", "id": fc[0]["id"]},
                                            {"type": "function_call_output", "call_id": fc[0]["call_id"], "output": "noon"}],
                                  "tools": tools, "max_output_tokens": 4})
    check(s == 200, "item_reference to a function_call item (%d %s)" % (s, str(t)[:200]))
else:
    check(False, "a forced call gave no function_call item (%d)" % s)
s, t = jreq("/v1/responses", {"input": [{"type": "item_reference", "id": "msg_does_not_exist"}], "max_output_tokens": 2})
check(s in (400, 404) and param_of(t) == "input", "unknown item_reference -> 4xx naming input (%d)" % s)
s, nostore = jreq("/v1/responses", {"input": "hi", "max_output_tokens": 2, "store": False})
s, t = jreq("/v1/responses", {"input": [{"type": "item_reference", "id": nostore["output"][0]["id"]}], "max_output_tokens": 2})
check(s in (400, 404), "item of a store:false response is not kept (%d)" % s)

s, t = jreq("/v1/responses", {"input": "Hi", "max_output_tokens": 8, "temperature": 1, "seed": 3,
                              "include": ["message.output_text.logprobs"], "top_logprobs": 3})
lp = t["output"][0]["content"][0]["logprobs"] if s == 200 else []
check(s == 200 and len(lp) == t["usage"]["output_tokens"] and all(len(e["top_logprobs"]) == 3 and e["logprob"] <= 0 for e in lp),
      "responses logprobs: one entry per token with 3 alternatives (%d, %d entries)" % (s, len(lp)))
s, t2 = jreq("/v1/responses", {"input": "Hi", "max_output_tokens": 8, "temperature": 1, "seed": 3,
                               "include": ["message.output_text.logprobs"]})
lp2 = t2["output"][0]["content"][0]["logprobs"] if s == 200 else []
check(s == 200 and [e["token"] for e in lp2] == [e["token"] for e in lp] and all(e["top_logprobs"] == [] for e in lp2),
      "include alone: logprobs without alternatives (%d)" % s)
s, t3 = jreq("/v1/responses", {"input": "Hi", "max_output_tokens": 4})
check(s == 200 and t3["output"][0]["content"][0]["logprobs"] == [], "no logprobs unless asked")
s, t = req("POST", "/v1/responses", {"input": "Hi", "max_output_tokens": 8, "temperature": 1, "seed": 3, "stream": True,
                                     "include": ["message.output_text.logprobs"], "top_logprobs": 2})
evs = sse(t)
deltas = [d for e, d in evs if e == "response.output_text.delta"]
done = [d for e, d in evs if e == "response.output_text.done"]
streamed = [x for d in deltas for x in d["logprobs"]]
check(s == 200 and [e["token"] for e in streamed] == [e["token"] for e in lp] and done and len(done[0]["logprobs"]) == len(lp)
      and all(len(e["top_logprobs"]) == 2 for e in streamed), "responses logprobs streamed in the deltas (%d of %d)" % (len(streamed), len(lp)))
s, t = jreq("/v1/responses", {"input": "Hi", "max_output_tokens": 2, "top_logprobs": 99})
check(s == 400 and param_of(t) == "top_logprobs", "top_logprobs out of range -> 400 (%d)" % s)
s, t = jreq("/v1/responses", {"input": "Hi", "max_output_tokens": 2, "include": "message.output_text.logprobs"})
check(s == 400 and param_of(t) == "include", "include not an array -> 400 (%d)" % s)

# ---- Ollama: flat named tool_choice, /api/generate context ----------------------------------------------
otools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                             "parameters": weather}}]
s, t = jreq("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": otools, "stream": False,
                          "tool_choice": {"type": "function", "name": "get_weather"}, "options": {"num_predict": 200}})
calls = t["message"].get("tool_calls", []) if s == 200 else []
check(s == 200 and calls and calls[0]["function"]["name"] == "get_weather", "ollama flat named tool_choice honoured (%d %s)" % (s, str(t)[:200]))
s, t = jreq("/api/chat", {"model": MODEL, "messages": user, "stream": False, "tool_choice": {"type": "function", "name": "nothing"},
                          "options": {"num_predict": 3}})
check(s == 200, "ollama tool_choice without tools is ignored, as Ollama does (%d)" % s)

s, g = jreq("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False, "options": {"num_predict": 5, "seed": 1}})
ctx = g.get("context") if s == 200 else None
check(isinstance(ctx, list) and len(ctx) > g["prompt_eval_count"] and all(isinstance(x, int) for x in ctx),
      "/api/generate answers carry 'context' (%d)" % s)
s, g2 = jreq("/api/generate", {"model": MODEL, "prompt": "More", "stream": False, "context": ctx, "options": {"num_predict": 3}})
s0, g0 = jreq("/api/generate", {"model": MODEL, "prompt": "More", "stream": False, "options": {"num_predict": 3}})
check(s == 200 and s0 == 200 and g2["prompt_eval_count"] == g0["prompt_eval_count"] + len(ctx) - 1 and g2["context"][:len(ctx)] == ctx,
      "a request's 'context' comes before its prompt (%d)" % s)
s, t = req("POST", "/api/generate", {"model": MODEL, "prompt": "Hello", "options": {"num_predict": 5, "seed": 1}})
lines = [json.loads(x) for x in t.splitlines() if x.strip()]
check(s == 200 and lines[-1]["done"] and lines[-1].get("context") == ctx, "streamed /api/generate: the done line carries the same 'context'")
check(all(x.get("context") == [] for x in lines[:-1]), "streamed /api/generate: partial lines carry an empty 'context'")
s, t = jreq("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False, "max_tokens": 3})
check(s == 200 and t["eval_count"] == 3, "/api/generate top-level max_tokens honoured (%d)" % s)
s, t = jreq("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False, "raw": True, "context": ctx, "options": {"num_predict": 2}})
check(s == 200 and t["prompt_eval_count"] > len(ctx), "raw with context (%d)" % s)
s, t = jreq("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False, "context": [1, 2, 10 ** 9]})
check(s == 400 and "context" in t.get("error", ""), "bad context id -> 400 (%d)" % s)
s, t = jreq("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False, "context": "abc"})
check(s == 400 and "context" in t.get("error", ""), "context not an array -> 400 (%d)" % s)

# ---- fill-in-the-middle: suffix ----------------------------------------------------------------------------
s, a = jreq("/v1/completions", {"prompt": "def add(a, b):\n", "max_tokens": 4})
s2, b = jreq("/v1/completions", {"prompt": "def add(a, b):\n", "suffix": "\n    return c\n", "max_tokens": 4})
check(s == 200 and s2 == 200 and b["usage"]["prompt_tokens"] > a["usage"]["prompt_tokens"] + 2, "completions suffix honoured (%d)" % s2)
s3, c = jreq("/api/generate", {"model": MODEL, "prompt": "def add(a, b):\n", "suffix": "\n    return c\n", "stream": False,
                               "options": {"num_predict": 4}})
check(s3 == 200 and c["prompt_eval_count"] == b["usage"]["prompt_tokens"], "/api/generate suffix: the same prompt (%d)" % s3)
s, t = jreq("/v1/completions", {"prompt": "x", "suffix": ["y"], "max_tokens": 2})
check(s == 400 and param_of(t) == "suffix", "suffix not a string -> 400 naming it (%d)" % s)
s, t = jreq("/v1/completions", {"prompt": "x", "suffix": "y", "echo": True, "max_tokens": 2})
check(s == 400 and param_of(t) == "suffix", "suffix with echo -> 400 naming it (%d)" % s)

# ---- tool-call ids are random, not a sequence (issue 41) ---------------------------------------------
import re
ctools = [{"type": "function", "function": {"name": "get_time", "parameters": weather}}]
ids = []
for _ in range(3):
    s, t = jreq("/v1/chat/completions", {"messages": user, "tools": ctools, "tool_choice": "required", "max_tokens": 200})
    ids += [c["id"] for c in (t["choices"][0]["message"].get("tool_calls") or [])] if s == 200 else []
check(len(ids) >= 3 and all(re.fullmatch(r"call_[0-9a-f]{32}", i) for i in ids), "tool-call ids are call_<32 hex>: %s" % ids)
nums = [int(i[5:], 16) for i in ids]
check(len(set(ids)) == len(ids) and all(abs(b - a) > 1 << 64 for a, b in zip(nums, nums[1:])),
      "tool-call ids are distinct and not a sequence: %s" % ids)
s, t = jreq("/v1/messages", {"max_tokens": 200, "messages": [{"role": "user", "content": "What time is it?"}],
                             "tools": [{"name": "get_time", "input_schema": weather}], "tool_choice": {"type": "any"}})
tu = [b["id"] for b in t.get("content", []) if b.get("type") == "tool_use"] if s == 200 else []
check(tu and re.fullmatch(r"toolu_[0-9a-f]{32}", tu[0]) and tu[0][6:] not in [i[5:] for i in ids], "tool_use ids random too: %s" % tu)

s, t = jreq("/v1/chat/completions", {"messages": user, "max_tokens": 2})
check(s == 200, "server still answers (%d)" % s)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
