#!/usr/bin/env python3
"""context_fit.py — a forced answer (tool_choice required / named, a JSON response format) that
cannot fit in the context is a clear 400 context_length_exceeded, never a 200 cut short: refused
before generation when the prompt leaves less room than the answer's fewest tokens, and failed
(a 400, or an error event in a stream) when the context cuts one under way; the client's own
max_tokens still ends it with finish "length". Every API: OpenAI chat, Responses, Anthropic, Ollama.
Run against `lfm2c serve -np 1 -c 360 --test-script` with the fixture model (issue 36).
usage: python3 context_fit.py BASE_URL CTX"""
import http.client
import json
import sys
import urllib.parse
from harness import check, finish, request

base, CTX = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(base)


def req(path, body):
    return request(u.port, "POST", path, body, host=u.hostname)


def served_model():
    """The server's model id: every API's requests name it (another name is a 404)."""
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", "/v1/models")
    r = c.getresponse()
    m = json.loads(r.read())["data"][0]["id"]
    c.close()
    return m


MODEL = served_model()


def fn(name, props, required):
    return {"type": "function", "function": {"name": name, "description": name,
            "parameters": {"type": "object", "properties": props, "required": required}}}


TOOLS = [fn("get_weather", {"city": {"type": "string"}}, ["city"]), fn("search", {"q": {"type": "string"}}, ["q"])]
CHAT = "/v1/chat/completions"


def msgs(n):  # n None (no filler found): far too long, every check on it fails
    return [{"role": "user", "content": "x " * (n if n is not None else 4000)}]


def chat_tokens(n, extra):
    s, t = req(CHAT, dict({"messages": msgs(n), "max_tokens": 1}, **extra))
    return t["usage"]["prompt_tokens"] if s == 200 else CTX


def filler(room, count=lambda n: chat_tokens(n, {"tools": TOOLS})):
    """the filler length whose prompt leaves `room` tokens (count(n): the prompt's tokens)"""
    lo, hi = 0, 400
    while lo < hi:  # the smallest n whose prompt leaves at most room
        mid = (lo + hi) // 2
        if CTX - count(mid) <= room:
            hi = mid
        else:
            lo = mid + 1
    return lo if CTX - count(lo) == room else None


def err_code(t):
    return t.get("error", {}).get("code") if isinstance(t, dict) and isinstance(t.get("error"), dict) else None


def err_msg(t):
    if isinstance(t, dict) and isinstance(t.get("error"), dict):
        return t["error"].get("message", "")
    return t.get("error", "") if isinstance(t, dict) and isinstance(t.get("error"), str) else ""


# ---- refused before generation: exactly when the room is below the fewest tokens ------------------
n2 = filler(2)
s, t = req(CHAT, {"messages": msgs(n2), "tools": TOOLS, "tool_choice": "required"})
check(s == 400 and err_code(t) == "context_length_exceeded" and "needs at least" in err_msg(t),
      "required call, 2 tokens of room: 400 before generation (%d %r)" % (s, t))
need = int(err_msg(t).split("needs at least ")[1].split()[0]) if "needs at least" in err_msg(t) else 0
check(need > 2, "the fewest tokens of the call: %d" % need)
# the fewest: [search(q="")] after the marker, in this vocabulary's tokens
nm = filler(need - 1)
s, t = req(CHAT, {"messages": msgs(nm), "tools": TOOLS, "tool_choice": "required"})
check(s == 400 and "needs at least %d" % need in err_msg(t), "room one short of %d: refused (%d %r)" % (need, s, t))
ne = filler(need)
s, t = req(CHAT, {"messages": msgs(ne), "tools": TOOLS, "tool_choice": "required"})
check(not (s == 400 and "needs at least" in err_msg(t)), "room of exactly %d: not refused (%d %r)" % (need, s, t))
named = {"type": "function", "function": {"name": "get_weather"}}
for stream in (False, True):
    s, t = req(CHAT, {"messages": msgs(ne), "tools": TOOLS, "tool_choice": named, "stream": stream})
    check(s == 400 and err_code(t) == "context_length_exceeded" and "forced tool call" in err_msg(t),
          "named get_weather (longer than search) at room %d: 400 (stream %s: %d %r)" % (need, stream, s, t))

# structured output whose shortest answer is long: a constant no token spells more than a
# character or two of (a string of 40 characters would not do: a few tokens of spaces write it)
long_schema = {"type": "object", "properties": {"w": {"const": "Zq8#Xv2!Lp5@Mw7$Rt4%Ky1^Nb6&Hd3*Gf9(Js0)"}},
               "required": ["w"], "additionalProperties": False}
rf = {"type": "json_schema", "json_schema": {"name": "w", "strict": True, "schema": long_schema}}
n30 = filler(30)
p30 = filler(30, lambda n: chat_tokens(n, {}))
s, t = req(CHAT, {"messages": msgs(p30), "response_format": rf})
check(s == 400 and err_code(t) == "context_length_exceeded" and "structured output needs at least" in err_msg(t),
      "json_schema needing > 40 tokens in 30: 400 (%d %r)" % (s, t))

# ---- cut under way by the context: 400 / an error event, not a 200 with half a call ---------------
long_call = '<|tool_call_start|>[search(q="' + "a b " * 30 + '")]<|tool_call_end|>'
s, t = req(CHAT, {"messages": msgs(n30), "tools": TOOLS, "tool_choice": "required", "test_script": long_call})
check(s == 400 and err_code(t) == "context_length_exceeded" and "ran out" in err_msg(t),
      "a call cut by the context: 400 (%d %r)" % (s, t))
c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
c.request("POST", CHAT, body=json.dumps({"messages": msgs(n30), "tools": TOOLS, "tool_choice": "required", "stream": True,
                                         "test_script": long_call}), headers={"Content-Type": "application/json"})
r = c.getresponse()
body = r.read().decode()
events = [json.loads(x[6:]) for x in body.splitlines() if x.startswith("data: ") and x[6:] != "[DONE]"]
check(any(err_code(e) == "context_length_exceeded" for e in events) and
      not any(ch.get("finish_reason") for e in events for ch in e.get("choices", [])),
      "streamed: an error event, no finish_reason (%r)" % body[-300:])
# a call that fits comes back whole
s, t = req(CHAT, {"messages": msgs(n30), "tools": TOOLS, "tool_choice": "required",
                  "test_script": '<|tool_call_start|>[search(q="ab")]<|tool_call_end|>'})
calls = t["choices"][0]["message"].get("tool_calls") if s == 200 else None
check(s == 200 and calls and calls[0]["function"]["name"] == "search", "a call that fits: 200 (%d %r)" % (s, t))
# the client's own max_tokens: finish "length", as before
s, t = req(CHAT, {"messages": msgs(n30), "tools": TOOLS, "tool_choice": "required", "max_tokens": 5, "test_script": long_call})
check(s == 200 and t["choices"][0]["finish_reason"] == "length", "max_tokens cuts the call: finish length (%d %r)" % (s, t))
# JSON cut by the context under way
s, t = req(CHAT, {"messages": msgs(p30), "response_format": {"type": "json_object"},
                  "test_script": '{"k":"' + "a b " * 30 + '"}'})
check(s == 400 and err_code(t) == "context_length_exceeded" and "structured output" in err_msg(t),
      "json_object cut by the context: 400 (%d %r)" % (s, t))

# ---- the other APIs -------------------------------------------------------------------------------
resp_tools = [{"type": "function", "name": x["function"]["name"], "parameters": x["function"]["parameters"]} for x in TOOLS]


def resp_tokens(n, extra):
    s, t = req("/v1/responses", dict({"model": MODEL, "input": "x " * n, "max_output_tokens": 1}, **extra))
    return t["usage"]["input_tokens"] if s == 200 else CTX


r2 = filler(2, lambda n: resp_tokens(n, {"tools": resp_tools}))
s, t = req("/v1/responses", {"model": MODEL, "input": msgs(r2)[0]["content"], "tools": resp_tools, "tool_choice": "required"})
check(s == 400 and err_code(t) == "context_length_exceeded" and "needs at least" in err_msg(t),
      "responses: required call without room: 400 (%d %r)" % (s, t))
r30 = filler(30, lambda n: resp_tokens(n, {}))
s, t = req("/v1/responses", {"model": MODEL, "input": msgs(r30)[0]["content"], "text": {"format": {"type": "json_schema", "name": "w",
                                                                                   "strict": True, "schema": long_schema}}})
check(s == 400 and "needs at least" in err_msg(t), "responses: json_schema without room: 400 (%d %r)" % (s, t))
ant_tools = [{"name": x["function"]["name"], "input_schema": x["function"]["parameters"]} for x in TOOLS]


def ant_tokens(n, extra):
    s, t = req("/v1/messages", dict({"model": MODEL, "max_tokens": 1, "messages": msgs(n)}, **extra))
    if s != 200:
        return CTX
    us = t["usage"]
    return us["input_tokens"] + us.get("cache_read_input_tokens", 0) + us.get("cache_creation_input_tokens", 0)


a2 = filler(2, lambda n: ant_tokens(n, {"tools": ant_tools}))
s, t = req("/v1/messages", {"model": MODEL, "max_tokens": 1000, "messages": msgs(a2), "tools": ant_tools,
                            "tool_choice": {"type": "any"}})
check(s == 400 and isinstance(t, dict) and t.get("type") == "error" and "needs at least" in err_msg(t),
      "anthropic: tool_choice any without room: 400 (%d %r)" % (s, t))
a30 = filler(30, lambda n: ant_tokens(n, {"tools": ant_tools}))
s, t = req("/v1/messages", {"model": MODEL, "max_tokens": 1000, "messages": msgs(a30), "tools": ant_tools,
                            "tool_choice": {"type": "any"}, "test_script": long_call})
check(s == 400 and "ran out" in err_msg(t), "anthropic: a call cut by the context: 400 (%d %r)" % (s, t))

def stream_body(path, body):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, text


s, text = stream_body("/v1/messages", {"model": MODEL, "max_tokens": 1000, "messages": msgs(a30), "tools": ant_tools,
                                       "tool_choice": {"type": "any"}, "test_script": long_call, "stream": True})
check("event: error" in text and "ran out" in text and "invalid_request_error" in text and "message_stop" not in text,
      "anthropic streamed: an error event, no message_stop (%r)" % text[-300:])
rt30 = filler(30, lambda n: resp_tokens(n, {"tools": resp_tools}))
s, text = stream_body("/v1/responses", {"model": MODEL, "input": msgs(rt30)[0]["content"], "tools": resp_tools,
                                        "tool_choice": "required", "test_script": long_call, "stream": True})
check("ran out" in text and "response.completed" not in text and "response.incomplete" not in text,
      "responses streamed: an error, no completed / incomplete response (%r)" % text[-300:])


def ollama_tokens(n):
    s, t = req("/api/chat", {"model": MODEL, "messages": msgs(n), "stream": False, "options": {"num_predict": 1}})
    return t["prompt_eval_count"] if s == 200 else CTX


o30 = filler(30, ollama_tokens)
s, t = req("/api/chat", {"model": MODEL, "messages": msgs(o30), "format": long_schema, "stream": False})
check(s == 400 and "needs at least" in err_msg(t), "ollama: format without room: 400 (%d %r)" % (s, t))
s, t = req("/api/chat", {"model": MODEL, "messages": msgs(o30), "format": "json", "stream": False,
                         "test_script": '{"k":"' + "a b " * 30 + '"}'})
check(s == 400 and "ran out" in err_msg(t), "ollama: JSON cut by the context: 400 (%d %r)" % (s, t))

finish()
