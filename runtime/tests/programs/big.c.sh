#!/bin/sh
# Generate a C program whose .text is far bigger than `jal`'s +-1 MiB reach: $1 traced
# functions (default 48), each running $2 real instructions (default 16384, i.e. 64 KiB of
# `addi`: 48 x 64 KiB = 3 MiB), called once each in order from main. With the runtime linked
# after this code, the first functions are ~3 MiB from padtrim_trampoline, so only an island
# (emitted by `padtrim rewrite`) can reach it from their slots.
n=${1:-48}
insns=${2:-16384}
printf '%s\n' '#include <stdio.h>'
i=0
while [ "$i" -lt "$n" ]; do
    printf '__attribute__((noinline)) long big%d(long x) {\n' "$i"
    printf '    long t = x;\n'
    # addi with an immediate over 31 has no compressed form: 4 bytes each.
    printf '    __asm__ volatile(".rept %d\\n\\taddi %%0, %%0, 100\\n\\t.endr" : "+r"(t));\n' "$insns"
    printf '    return t;\n}\n'
    i=$((i + 1))
done
printf 'int main(void) {\n    long s = 0;\n'
i=0
while [ "$i" -lt "$n" ]; do
    printf '    s = big%d(s);\n' "$i"
    i=$((i + 1))
done
printf '    printf("s=%%ld\\n", s);\n    return 0;\n}\n'
