#!/usr/bin/python3
"""Regenerates the chat-template goldens with Python jinja2 (Debian python3-jinja2), the oracle
our C interpreter must match byte for byte.

  scripts/render_chat_goldens.py            rewrite tests/data/chat-extra/goldens.json
  scripts/render_chat_goldens.py --check    only compare with the stored goldens (exit 1 on a diff)

Renders every conversation of tests/data/chat-extra/conversations.json with every template in
tests/data/lfm2/*.jinja, in the environment transformers gives chat templates (described in
tests/data/chat/README.md): immutable sandbox, jinja2's default whitespace handling, loopcontrols,
a {% generation %} tag, tojson = json.dumps(ensure_ascii=False), raise_exception, and
strftime_now with the clock fixed at 2026-01-15 12:00 (local time).

It also checks tests/data/jinja/unit.json, the interpreter's unit cases (template, variables,
expected output or error), so that the expectations written there by hand are what jinja2 does.
"""
import datetime
import glob
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED_NOW = datetime.datetime(2026, 1, 15, 12, 0, 0)


class GenerationBlock(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body (as transformers does, a call block)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def make_env():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=False, lstrip_blocks=False, extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)
    return env


def render(env, template_text, variables):
    """Returns {"rendered": str} or {"error": "Type: message"}."""
    try:
        return {"rendered": env.from_string(template_text).render(**variables)}
    except Exception as e:  # the template's own failure is a result too
        return {"error": f"{type(e).__name__}: {e}"}


def chat_goldens(env):
    convs = json.load(open(os.path.join(ROOT, "tests/data/chat-extra/conversations.json"), encoding="utf-8"))
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/data/lfm2/*.jinja"))):
        text = open(path, encoding="utf-8").read()
        for c in convs:
            variables = {"messages": c["messages"], "tools": c.get("tools"),
                         "add_generation_prompt": c["add_generation_prompt"],
                         "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"}
            rec = {"conversation": c["name"], "template": os.path.basename(path)}
            rec.update(render(env, text, variables))
            out.append(rec)
    return out


def check_unit(env):
    path = os.path.join(ROOT, "tests/data/jinja/unit.json")
    if not os.path.exists(path):
        return 0
    bad = 0
    for i, case in enumerate(json.load(open(path, encoding="utf-8"))):
        got = render(env, case["template"], case.get("vars", {}))
        if "error" in case:
            ok = "error" in got
        else:
            ok = got.get("rendered") == case["expected"]
        if not ok:
            bad += 1
            print(f"unit case {i} {case['template']!r}: expected "
                  f"{'an error' if 'error' in case else repr(case['expected'])}, jinja2 gives {got}")
    return bad


def main():
    env = make_env()
    bad = check_unit(env)
    goldens = chat_goldens(env)
    path = os.path.join(ROOT, "tests/data/chat-extra/goldens.json")
    text = json.dumps(goldens, ensure_ascii=False, indent=1) + "\n"
    if "--check" in sys.argv:
        same = os.path.exists(path) and open(path, encoding="utf-8").read() == text
        print("goldens up to date" if same else "goldens differ from jinja2's renderings")
        bad += not same
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {len(goldens)} renderings to {os.path.relpath(path, ROOT)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
