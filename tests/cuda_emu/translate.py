#!/usr/bin/env python3
"""translate.py - CUDA source to the emulator's C++ (see emu.h).

Rewrites only what C++ cannot spell: a launch `k<<<grid, block, smem,
stream>>>(args)` becomes `emu_launch(k, "k", grid, block, smem, stream)(args)`;
`extern __shared__ [__align__(n)] T name[];` becomes a pointer to the launch's
dynamic shared memory; `__shared__ T a[..], b;` becomes function statics
followed by emu_smem_poison() calls (shared memory starts undefined in every
block).  Line numbers are kept, so compiler errors
and faults point at the .cu file's lines.

usage: translate.py in.cu out.cc
"""
import re
import sys

# a static shared declaration: type, then declarators up to the semicolon
SHARED = re.compile(r'(?<!extern )__shared__\s+([A-Za-z_][\w ]*?)\s+([A-Za-z_]\w*\s*(?:\[[^;]*?\])*(?:\s*,\s*[A-Za-z_]\w*\s*(?:\[[^;]*?\])*)*)\s*;')
LAUNCH = re.compile(r'([A-Za-z_]\w*(?:<[^<>()]*>)?)\s*<<<(.*?)>>>\s*\(', re.S)
DYN_SMEM = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w ]*?)\s+(\w+)\s*\[\s*\]\s*;')


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    src = open(src_path).read()
    n_launch = len(LAUNCH.findall(src))
    out = LAUNCH.sub(lambda m: 'emu_launch(%s, "%s", %s)(' % (m.group(1), m.group(1), m.group(2)), src)
    def shared(m):
        names = re.findall(r'(?:^|,)\s*([A-Za-z_]\w*)', m.group(2))
        poison = ' '.join('emu_smem_poison(&%s, sizeof %s);' % (n, n) for n in names)
        return 'static %s %s; %s' % (m.group(1), m.group(2), poison)
    out = SHARED.sub(shared, out)
    out = DYN_SMEM.sub(lambda m: '%s *%s = (%s *)emu_dyn_smem();' % (m.group(1), m.group(2), m.group(1)), out)
    code = re.sub(r'/\*.*?\*/|//[^\n]*', '', out, flags=re.S)
    if '<<<' in code or '__shared__' in code:
        sys.exit('translate.py: %s: a launch or __shared__ declaration it cannot rewrite is left' % src_path)
    if out.count('\n') != src.count('\n'):
        sys.exit('translate.py: line count changed')
    with open(out_path, 'w') as f:
        f.write('#line 1 "%s"\n' % src_path)
        f.write(out)
    print('translate.py: %s: %d launches' % (src_path, n_launch))


if __name__ == '__main__':
    main()
