#!/usr/bin/env python3
"""budget.py URL KEY — max_tokens is a hard bound under every constraint (issue 11 items 2-3,
issue 12 item 7), checked over a sweep of budgets, streamed and not:
- json_schema / json_object: at most max_tokens completion tokens; finish "length" when cut,
  else the content is JSON that parses;
- forced tool calls (required / named, a maxLength string as in the bug report): a call cut by
  max_tokens is no call (no tool_calls, finish "length"), and no raw special token reaches content;
  a finished call has arguments that parse;
- never a 5xx; logit_bias that bans every token is a 400, not token 0 / '<|pad|>'.
Prints failures, then 'N passed, N failed'."""
import json
import sys
import urllib.error
import urllib.request

URL, KEY = sys.argv[1], sys.argv[2]
ONLY_BAN = "--only-ban" in sys.argv  # the ban body is large: run it against a server with the default --max-body
passed = failed = 0


def check(name, cond, info=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {info}", file=sys.stderr)


def post(body):
    req = urllib.request.Request(URL + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def answer(status, raw):
    """(finish, content, tool_calls, completion_tokens or None) of a plain or streamed answer."""
    if not raw.startswith("data:"):
        d = json.loads(raw)
        c = d["choices"][0]
        return c["finish_reason"], c["message"].get("content") or "", c["message"].get("tool_calls") or [], d["usage"]["completion_tokens"]
    finish, content, calls, usage = None, "", [], None
    for line in raw.splitlines():
        if not line.startswith("data: {"):
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        for ch in ev.get("choices") or []:
            finish = ch.get("finish_reason") or finish
            content += ch["delta"].get("content") or ""
            calls += ch["delta"].get("tool_calls") or []
    return finish, content, calls, usage


tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                     "days": {"type": "integer", "minimum": 1, "maximum": 14}},
    "required": ["city"]}}}]
schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "tags"], "additionalProperties": False}
msgs = [{"role": "user", "content": "Plan my trip: 东京 🗼 weather?"}]
budgets = [] if ONLY_BAN else [1, 2, 3, 4, 5, 6, 7, 9, 11, 14, 18, 23, 30, 40, 60]
for mt in budgets:
    for stream in (False, True):
        extra = {"stream": stream, "stream_options": {"include_usage": True}} if stream else {}
        cases = {
            "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}},
            "json_object": {"response_format": {"type": "json_object"}},
            "tool required": {"tools": tools, "tool_choice": "required"},
            "tool named": {"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        }
        for name, body in cases.items():
            for temp, seed in ((0, 0), (1.0, mt)):
                st, raw = post({"messages": msgs, "max_tokens": mt, "temperature": temp, "seed": seed, **body, **extra})
                tag = f"{name} max_tokens={mt} stream={stream} temp={temp}"
                check(f"{tag}: 200", st == 200, f"HTTP {st} {raw[:200]}")
                if st != 200:
                    continue
                finish, content, calls, used = answer(st, raw)
                check(f"{tag}: within max_tokens", used is not None and used <= mt, f"{used}")
                check(f"{tag}: no special tokens in content", "<|" not in content, repr(content[:80]))
                if name.startswith("json"):
                    if finish != "length":
                        try:
                            json.loads(content)
                            ok = True
                        except ValueError:
                            ok = False
                        check(f"{tag}: complete JSON", ok and finish == "stop", f"{finish} {content[:80]!r}")
                else:
                    if finish == "length":
                        check(f"{tag}: a cut call is no call", not calls, json.dumps(calls)[:120])
                    else:
                        ok = finish == "tool_calls" and calls and all(
                            isinstance(json.loads(c["function"]["arguments"]).get("city"), str) for c in calls)
                        check(f"{tag}: a finished call parses", ok, f"{finish} {json.dumps(calls)[:120]}")

# logit_bias banning every token (the ids 0..V-1 of the tiny vocab) is a 400, free text or JSON
if not ONLY_BAN:
    print(f"{passed} passed, {failed} failed")
    sys.exit(0)
models = json.loads(urllib.request.urlopen(urllib.request.Request(URL + "/v1/models", headers={"Authorization": "Bearer " + KEY})).read())
n_vocab = models["data"][0]["meta"]["n_vocab"]
ban = {str(i): -100 for i in range(n_vocab)}
for body in ({}, {"response_format": {"type": "json_object"}}):
    st, raw = post({"messages": msgs, "max_tokens": 8, "logit_bias": ban, **body})
    check(f"logit_bias bans every token {body}: 400", st == 400 and "unsatisfiable" in raw, f"{st} {raw[:160]}")
print(f"{passed} passed, {failed} failed")
