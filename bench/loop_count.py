#!/usr/bin/env python3
"""loop_count.py — counts the instructions of a kernel's block loop in compiler assembly (gcc -S).

usage: loop_count.py FILE.s FUNCTION [--mca OUT.s]
Finds FUNCTION's loops (a label and a later branch back to it), prints each one's static size,
and a breakdown by kind of the largest (the loop over weight blocks in a tile function; where
a loop over rows stays rolled inside it, both are listed and the reader multiplies). With --mca,
writes the largest loop's body (branch included) for llvm-mca. Used for bench/ARM.md; it says
nothing about speed, only what the compiler emitted."""
import re
import sys


def function_lines(path, fn):
    lines, inside = [], False
    for line in open(path):
        if line.startswith(fn + ':'):
            inside = True
            continue
        if inside:
            if line.strip().startswith('.size') and fn in line:
                break
            lines.append(line.rstrip('\n'))
    return lines


def is_insn(line):
    s = line.strip()
    return bool(s) and not s.startswith(('.', '#', '//', '@')) and not s.endswith(':')


def loops(lines):
    labels, found = {}, []
    for i, line in enumerate(lines):
        s = line.strip()
        if re.match(r'^\.L\w+:$', s):
            labels[s[:-1]] = i
            continue
        if not is_insn(line):
            continue
        for lab, at in labels.items():
            if re.search(r'[\s,]' + re.escape(lab) + r'$', s):   # a branch back to an earlier label
                found.append((at, i, sum(is_insn(x) for x in lines[at:i + 1])))
    return found


def kind(mnemonic):
    m = mnemonic.lower().replace('{vex}', '').strip()
    for k, pats in (('prefetch', ('prfm', 'prefetch')), ('int dot (sdot/vpdpbusd)', ('sdot', 'vpdpbusd')),
                    ('int8 matmul (smmla)', ('smmla',)), ('int widen-mul (smull/smlal/sadalp/maddubs/madd)',
                     ('smull', 'smlal', 'sadalp', 'saddlp', 'vpmaddubsw', 'vpmaddwd', 'vpdpwssd')),
                    ('float fma', ('fmla', 'fmls', 'vfmadd', 'vfnmadd', 'fmadd', 'fmsub')),
                    ('load', ('ld', 'vmovdqu', 'vbroadcast', 'vpbroadcast', 'vmovu', 'vinserti', 'vmovd', 'vmovq')),
                    ('store', ('st', 'vmovdqa64'))):
        if m.startswith(pats):
            return k
    return 'other (unpack, shuffle, add, convert, address, branch)'


def main():
    path, fn = sys.argv[1], sys.argv[2]
    lines = function_lines(path, fn)
    found = loops(lines)
    if not found:
        sys.exit(f'{fn}: no loop found in {path}')
    for at, end, n in sorted(found):
        print(f'{fn}: loop at line {at} .. {end}: {n} instructions')
    at, end, n = max(found, key=lambda x: x[2])
    body = [x for x in lines[at:end + 1] if is_insn(x)]
    counts = {}
    for x in body:
        k = kind(x.split()[1] if x.split()[0] == '{vex}' else x.split()[0])
        counts[k] = counts.get(k, 0) + 1
    print(f'{fn}: the largest loop, {n} instructions:')
    for k, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f'  {c:4d}  {k}')
    if len(sys.argv) > 4 and sys.argv[3] == '--mca':
        with open(sys.argv[4], 'w') as f:
            f.write('\n'.join(lines[at:end + 1]) + '\n')


main()
