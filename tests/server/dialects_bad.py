#!/usr/bin/env python3
"""dialects_bad.py — malformed requests to the Responses, Anthropic Messages and Ollama routes of a
running `lfm2c serve`: each gets a 4xx in its API's own error shape (never a 5xx, a hang or a
crash), and the server still answers afterwards; over-long and multi-byte model names on every
route that takes a 'model' (OpenAI's too).
usage: python3 dialects_bad.py BASE_URL API_KEY"""
import http.client
import json
import sys
import urllib.parse
from harness import check, finish

base, key = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(base)


def req(method, path, body=None, headers=None, raw=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, text


def openai_shape(t):
    try:
        e = json.loads(t)["error"]
        return isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str) and "param" in e
    except Exception:
        return False


def anthropic_shape(t, etype="invalid_request_error"):
    try:
        j = json.loads(t)
        return j["type"] == "error" and j["error"]["type"] == etype and isinstance(j["error"]["message"], str)
    except Exception:
        return False


def ollama_shape(t):
    try:
        j = json.loads(t)
        return isinstance(j["error"], str) and j["error"] and len(j) == 1
    except Exception:
        return False


user = [{"role": "user", "content": "hi"}]

# ---- Responses (OpenAI's error shape) ----
R = "/v1/responses"
for name, body, status in [
    ("no input", {}, 400),
    ("input a number", {"input": 5}, 400),
    ("input item of unknown type", {"input": [{"type": "input_image", "image_url": "x"}]}, 400),
    ("message with a bad role", {"input": [{"role": "robot", "content": "x"}]}, 400),
    ("message content a number", {"input": [{"role": "user", "content": 7}]}, 400),
    ("function_call without call_id", {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, 400),
    ("function_call_output without output", {"input": [{"type": "function_call_output", "call_id": "c"}]}, 400),
    ("function_call with non-JSON arguments", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"},
                                               {"role": "user", "content": "x"}]}, 400),
    ("hosted tool", {"input": "x", "tools": [{"type": "web_search"}]}, 400),
    ("tools not an array", {"input": "x", "tools": {}}, 400),
    ("tool_choice a number", {"input": "x", "tool_choice": 3}, 400),
    ("tool_choice required without tools", {"input": "x", "tool_choice": "required"}, 400),
    ("text.format of unknown type", {"input": "x", "text": {"format": {"type": "xml"}}}, 400),
    ("json_schema without schema", {"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, 400),
    ("unsupported schema", {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "array", "contains": {"type": "string"}, "maxContains": 2}}}}, 400),
    ("max_output_tokens 0", {"input": "x", "max_output_tokens": 0}, 400),
    ("temperature a string", {"input": "x", "temperature": "hot"}, 400),
    ("instructions a number", {"input": "x", "instructions": 1}, 400),
    ("store a string", {"input": "x", "store": "no"}, 400),
    ("previous_response_id unknown", {"input": "x", "previous_response_id": "resp_missing"}, 404),
    ("previous_response_id a number", {"input": "x", "previous_response_id": 5}, 400),
]:
    s, t = req("POST", R, body)
    check(s == status and openai_shape(t), "responses %s -> %d %s" % (name, s, t[:200]))
s, t = req("POST", R, raw="{nope")
check(s == 400 and openai_shape(t), "responses invalid JSON -> %d" % s)
s, t = req("POST", R, {"input": "x"}, headers={"Authorization": "Bearer wrong"})
check(s == 401 and openai_shape(t), "responses wrong key -> %d" % s)

# ---- Anthropic Messages ----
M = "/v1/messages"
AV = {"anthropic-version": "2023-06-01"}
for name, body in [
    ("no max_tokens", {"messages": user}),
    ("max_tokens 0", {"max_tokens": 0, "messages": user}),
    ("max_tokens a string", {"max_tokens": "8", "messages": user}),
    ("no messages", {"max_tokens": 8}),
    ("empty messages", {"max_tokens": 8, "messages": []}),
    ("bad role", {"max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}),
    ("content a number", {"max_tokens": 8, "messages": [{"role": "user", "content": 3}]}),
    ("image block", {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
    ("block without type", {"max_tokens": 8, "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
    ("tool_use from the user", {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]}),
    ("tool_use input not an object", {"max_tokens": 8, "messages": [user[0], {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": 3}]}]}),
    ("tool_result without id", {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
    ("system a number", {"max_tokens": 8, "system": 3, "messages": user}),
    ("tool without input_schema", {"max_tokens": 8, "messages": user, "tools": [{"name": "f"}]}),
    ("server tool", {"max_tokens": 8, "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    ("tool_choice bad type", {"max_tokens": 8, "messages": user, "tool_choice": {"type": "bogus"}}),
    ("tool_choice a string", {"max_tokens": 8, "messages": user, "tool_choice": "auto"}),
    ("tool_choice any without tools", {"max_tokens": 8, "messages": user, "tool_choice": {"type": "any"}}),
    ("temperature above 1", {"max_tokens": 8, "messages": user, "temperature": 1.5}),
    ("top_k a string", {"max_tokens": 8, "messages": user, "top_k": "x"}),
    ("stop_sequences a string", {"max_tokens": 8, "messages": user, "stop_sequences": "x"}),
    ("stop_sequences of numbers", {"max_tokens": 8, "messages": user, "stop_sequences": [1]}),
]:
    s, t = req("POST", M, body, headers=AV)
    check(s == 400 and anthropic_shape(t), "anthropic %s -> %d %s" % (name, s, t[:200]))
s, t = req("POST", M, raw="[1,", headers=AV)
check(s == 400 and anthropic_shape(t), "anthropic invalid JSON -> %d %s" % (s, t[:200]))
s, t = req("POST", M, {"max_tokens": 8, "messages": user}, headers={"Authorization": "", "x-api-key": "wrong"})
check(s == 401 and anthropic_shape(t, "authentication_error"), "anthropic wrong x-api-key -> %d %s" % (s, t[:200]))
s, t = req("POST", M, {"max_tokens": 4, "messages": user}, headers={"Authorization": "", "x-api-key": key, **AV})
check(s == 200 and json.loads(t)["type"] == "message", "anthropic x-api-key -> %d" % s)
s, t = req("GET", M)
check(s == 405 and anthropic_shape(t), "anthropic GET -> %d %s" % (s, t[:200]))
s, t = req("POST", "/v1/messages/count_tokens", {"messages": 5})
check(s == 400 and anthropic_shape(t), "count_tokens bad messages -> %d" % s)
s, t = req("POST", "/v1/messages/batches", {})
check(s == 404 and anthropic_shape(t, "not_found_error"), "anthropic unknown route -> %d %s" % (s, t[:200]))

# ---- Ollama ----
for path, name, body, status in [
    ("/api/chat", "messages a string", {"messages": "x"}, 400),
    ("/api/chat", "message without role", {"messages": [{"content": "x"}]}, 400),
    ("/api/chat", "content a number", {"messages": [{"role": "user", "content": 1}]}, 400),
    ("/api/chat", "images", {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400),
    ("/api/chat", "bad role", {"messages": [{"role": "robot", "content": "x"}], "stream": False}, 400),
    ("/api/chat", "tool_calls not an array", {"messages": [{"role": "assistant", "content": "", "tool_calls": {}}]}, 400),
    ("/api/chat", "tool call without a name", {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}]}, 400),
    ("/api/chat", "options a string", {"messages": [{"role": "user", "content": "x"}], "options": "hot"}, 400),
    ("/api/chat", "temperature a string", {"messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}, 400),
    ("/api/chat", "num_predict a float", {"messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1.5}}, 400),
    ("/api/chat", "num_ctx a string", {"messages": [{"role": "user", "content": "x"}], "options": {"num_ctx": "big"}}, 400),
    ("/api/chat", "stop a number", {"messages": [{"role": "user", "content": "x"}], "options": {"stop": 5}}, 400),
    ("/api/chat", "format a number", {"messages": [{"role": "user", "content": "x"}], "format": 5}, 400),
    ("/api/chat", "format an unsupported schema", {"messages": [{"role": "user", "content": "x"}], "format": {"type": "array", "contains": {"type": "string"}, "maxContains": 2}}, 400),
    ("/api/chat", "stream a string", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400),
    ("/api/chat", "model a number", {"model": 5, "messages": [{"role": "user", "content": "x"}]}, 400),
    ("/api/chat", "tools not an array", {"messages": [{"role": "user", "content": "x"}], "tools": 5}, 400),
    ("/api/generate", "prompt a number", {"prompt": 5}, 400),
    ("/api/generate", "system a number", {"prompt": "x", "system": 5}, 400),
    ("/api/generate", "suffix a number", {"prompt": "x", "suffix": 5}, 400),
    ("/api/generate", "context not an array", {"prompt": "x", "context": "abc"}, 400),
    ("/api/generate", "raw a string", {"prompt": "x", "raw": "yes"}, 400),
    ("/api/show", "no model", {}, 400),
    ("/api/show", "unknown model", {"model": "nope"}, 404),
    ("/api/pull", "no model", {}, 400),
    ("/api/copy", "unknown route", {"model": "x"}, 404),
]:
    s, t = req("POST", path, body)
    check(s == status and ollama_shape(t), "ollama %s %s -> %d %s" % (path, name, s, t[:200]))
s, t = req("POST", "/api/chat", raw="nope")
check(s == 400 and ollama_shape(t), "ollama invalid JSON -> %d %s" % (s, t[:200]))
s, t = req("GET", "/api/chat")
check(s == 405 and ollama_shape(t), "ollama GET /api/chat -> %d" % s)
s, t = req("GET", "/api/tags", headers={"Authorization": ""})
check(s == 401 and ollama_shape(t), "ollama without the key -> %d %s" % (s, t[:200]))
# empty requests load the model and answer done (as Ollama)
s, t = req("POST", "/api/generate", {})
check(s == 200 and json.loads(t)["done_reason"] == "load", "ollama generate without prompt -> %d %s" % (s, t[:200]))
s, t = req("POST", "/api/chat", {"messages": []})
check(s == 200 and json.loads(t)["done"] is True, "ollama chat without messages -> %d %s" % (s, t[:200]))
# a stream answers NDJSON lines, the last one done
s, t = req("POST", "/api/chat", {"messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 3}})
lines = [json.loads(x) for x in t.splitlines() if x.strip()]
check(s == 200 and lines and lines[-1]["done"] is True and all(not x["done"] for x in lines[:-1]), "ollama NDJSON stream")
# HEAD / and GET / from an Ollama client answer like Ollama; a browser's GET / is not taken
s, t = req("HEAD", "/", headers={"Authorization": ""})
check(s == 200, "HEAD / -> %d" % s)
s, t = req("GET", "/", headers={"User-Agent": "ollama-python/0.4", "Authorization": ""})
check(s == 200 and t == "Ollama is running", "GET / from an Ollama client -> %d %s" % (s, t[:80]))
s, t = req("GET", "/", headers={"User-Agent": "Mozilla/5.0", "Accept": "text/html"})
check(t != "Ollama is running", "GET / from a browser is not the Ollama answer")
# ---- model names: over-long, multi-byte, control characters, on every route that takes one ----
# an over-long or odd name is a 400 / 404 in the route's own shape, valid UTF-8; one within the
# limit whose cut would fall inside a character is used (Ollama echoes it whole), never a 500
SHAPE = {"o": openai_shape, "a": anthropic_shape, "l": ollama_shape}
ROUTES = [("/v1/chat/completions", "o", {"messages": user, "max_tokens": 2}),
          ("/v1/completions", "o", {"prompt": "hi", "max_tokens": 2}),
          ("/v1/embeddings", "o", {"input": "hi"}),
          ("/v1/responses", "o", {"input": "hi", "max_output_tokens": 2}),
          ("/v1/messages", "a", {"messages": user, "max_tokens": 2}),
          ("/v1/messages/count_tokens", "a", {"messages": user}),
          ("/api/chat", "l", {"messages": user, "stream": False, "options": {"num_predict": 2}}),
          ("/api/generate", "l", {"prompt": "hi", "stream": False, "options": {"num_predict": 2}}),
          ("/api/embed", "l", {"input": "hi"}),
          ("/api/embeddings", "l", {"prompt": "hi"}),
          ("/api/show", "l", {})]
BAD = {"400 bytes of e-acute": "\u00e9" * 200, "300 bytes of euro": "\u20ac" * 100, "260 bytes of emoji": "\U0001F600" * 65,
       "5000 ASCII bytes": "x" * 5000, "a control character": "llama\u0001x", "a newline": "llama3\n"}
FITS = {"255 bytes, e-acute from byte 1": "a" + "\u00e9" * 127, "256 bytes of e-acute": "\u00e9" * 128,
        "254 bytes, euro from byte 2": "ab" + "\u20ac" * 84, "short": "mod\u00e8le-\u20ac:latest"}
for path, shape, body in ROUTES:
    for what, name in list(BAD.items()) + list(FITS.items()):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        c.request("POST", path, json.dumps(dict(body, model=name)),
                  {"Content-Type": "application/json", "Authorization": "Bearer " + key})
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            t = raw.decode("utf-8")
            j = json.loads(t)
        except ValueError:
            t, j = raw.decode("utf-8", "replace"), None
        if what in BAD:
            check(r.status in (400, 404) and j is not None and SHAPE[shape](t),
                  "%s with a model of %s -> %d %s" % (path, what, r.status, t[:160]))
        else:
            echoed = j.get("model", name) if isinstance(j, dict) and shape == "l" and r.status == 200 else name
            found = r.status != 404 or shape != "a" or anthropic_shape(t, "not_found_error")  # Anthropic's 404
            check(r.status < 500 and j is not None and echoed == name and
                  (r.status < 400 or (SHAPE[shape](t) if r.status != 404 or shape != "a" else found)),
                  "%s with a model of %s -> %d %s" % (path, what, r.status, t[:160]))

# a long multi-byte model id in a path, and /api/show naming it by 'name': 404, valid UTF-8
for method, path, body, shape in [("GET", "/v1/models/" + urllib.parse.quote("\u00e9" * 200), None, "o"),
                                  ("POST", "/api/show", {"name": "\u00e9" * 200}, "l")]:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, path, json.dumps(body) if body else None,
              {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        t = raw.decode("utf-8")
    except ValueError:
        t = ""
    check(r.status in (400, 404) and SHAPE[shape](t), "%s %s with a long multi-byte name -> %d %r" % (method, path[:20], r.status, raw[:160]))

# structured output: integers past int64 in a schema are numbers (not a refused body); a pattern
# whose automaton is too costly to build is a quick 400 naming it
C = "/v1/chat/completions"
big = ('{"messages":[{"role":"user","content":"x"}],"max_tokens":4,"response_format":{"type":"json_schema",'
       '"json_schema":{"name":"n","strict":true,"schema":{"type":"integer","minimum":0,"maximum":18446744073709551616}}}}')
s, t = req("POST", C, raw=big)
check(s == 200, "schema with an integer past int64 -> %d %s" % (s, t[:200]))
costly = {"type": "object", "properties": {"p%d" % i: {"type": "string", "pattern": "^(?:[a-z0-9]{1,40}[.-]){1,40}[a-z0-9]{1,40}%d$" % i}
                                           for i in range(64)}}
s, t = req("POST", C, {"messages": user, "max_tokens": 4, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": costly}}})
check(s == 400 and "pattern" in t and "too costly" in t, "costly patterns -> %d %s" % (s, t[:200]))
# still serving
s, t = req("POST", "/v1/messages", {"max_tokens": 3, "messages": user})
check(s == 200, "server still answers -> %d" % s)

finish()
