#!/usr/bin/env bash
# test_docs.sh LFM2C — the README's and docs/*.md's code blocks run as a reader runs them, in a
# sandbox (tests/docs/run_docs.py: what runs, what stands in for the network and the machine, how
# a block says it is skipped). LFM2C_DOCS_ONLY=docs/LIBRARY.md runs one file's blocks.
set -u
python3 ../tests/docs/run_docs.py "$1"
