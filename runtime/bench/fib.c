/* Call-heavy benchmark: naive recursive Fibonacci; `calls` counts the calls so the
   per-call cost can be derived from two runs (argv[1] = n). */
#include <stdio.h>
#include <stdlib.h>

long calls;

__attribute__((noinline)) long fib(int n) {
    calls++;
    if (n < 2)
        return n;
    long a = fib(n - 1);
    long b = fib(n - 2);
    /* Keeps both calls real calls: otherwise GCC -O2 turns the second into a loop. */
    __asm__ volatile("" : "+r"(b));
    return a + b;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20;
    long r = fib(n);
    printf("fib(%d)=%ld calls=%ld\n", n, r, calls);
    return 0;
}
