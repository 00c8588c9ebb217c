#!/usr/bin/env python3
"""openapi_extract.py — writes tests/server/openapi-schemas.json, the part of OpenAI's published
OpenAPI specification (openapi.yaml of the openai/openai-openapi repository on GitHub) that
tests/server/openapi.mjs validates the server's answers against: the schemas of the answers it
checks (ROOTS) and every schema they reference, transitively, as the spec has them, less the
keywords that only annotate (description, title, example(s), deprecated, x-*), which no
validator reads. The spec's own mistakes are not mended here: the test relaxes them, each named
there.

usage: python3 tests/server/openapi_extract.py OPENAPI_YAML COMMIT > tests/server/openapi-schemas.json
  e.g. in a clone of openai/openai-openapi: git show COMMIT:openapi.yaml > /tmp/openapi.yaml
Needs PyYAML (Debian: python3-yaml). Run it again, with the new commit, to follow the spec.
"""
import json
import sys

import yaml

# The answers the tests validate: chat completions (and their chunks), completions, embeddings,
# models, the Responses API (the object, its stream events, its input items), errors (openapi.mjs),
# and the speech-to-text answers and stream events (audio.mjs).
ROOTS = [
    "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
    "CreateEmbeddingResponse", "ListModelsResponse", "Model", "Response", "ResponseStreamEvent",
    "ResponseItemList", "ErrorResponse", "CreateTranscriptionResponseJson", "CreateTranscriptionResponseVerboseJson",
    "CreateTranscriptionResponseStreamEvent", "CreateTranslationResponseJson", "CreateTranslationResponseVerboseJson",
]
ANNOTATIONS = {"description", "title", "example", "examples", "deprecated"}
PREFIX = "#/components/schemas/"


def strip(v):
    """v without annotation keywords (a 'properties' map keeps its property names)."""
    if isinstance(v, list):
        return [strip(x) for x in v]
    if not isinstance(v, dict):
        return v
    out = {}
    for k, x in v.items():
        if k in ("properties", "patternProperties", "$defs") and isinstance(x, dict):
            out[k] = {name: strip(s) for name, s in x.items()}
        elif k in ANNOTATIONS or k.startswith("x-"):
            continue
        else:
            out[k] = strip(x)
    return out


def refs(v, found):
    """Adds the names of the component schemas v references to found."""
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "$ref" and isinstance(x, str):
                if not x.startswith(PREFIX):
                    sys.exit(f"openapi_extract: a reference outside components/schemas: {x}")
                found.add(x[len(PREFIX):])
            else:
                refs(x, found)
    elif isinstance(v, list):
        for x in v:
            refs(x, found)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, commit = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schemas = spec["components"]["schemas"]
    keep, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in schemas:
            sys.exit(f"openapi_extract: the spec has no schema {name}")
        keep.add(name)
        found = set()
        refs(schemas[name], found)
        todo.extend(found - keep)
    out = {
        "source": {
            "repository": "openai/openai-openapi",
            "commit": commit,
            "file": "openapi.yaml",
            "openapi": spec.get("openapi"),
            "version": spec.get("info", {}).get("version"),
        },
        "note": "extracted by tests/server/openapi_extract.py: the schemas named in roots and those "
        "they reference, annotations left out",
        "roots": ROOTS,
        "components": {"schemas": {name: strip(schemas[name]) for name in sorted(keep)}},
    }
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
