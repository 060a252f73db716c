#!/bin/sh
# Generate a C file with $1 traced functions, all called once (startup patch cost).
n=$1
i=0
while [ $i -lt $n ]; do echo "__attribute__((noinline)) int f$i(int x) { return x + $i; }"; i=$((i+1)); done
echo "int main(void) { int s = 0;"
i=0
while [ $i -lt $n ]; do echo "s += f$i(s);"; i=$((i+1)); done
echo "return s & 1; }"
