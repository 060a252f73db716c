/* The bundled example (scripts/demo): a few functions with 16-byte patchable entries,
   rewritten to 4-byte slots and traced by the padtrim runtime. */
#include <stdio.h>

__attribute__((noinline)) static int square(int x) { return x * x; }

int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int classify(int x) {
    switch (x) {
    case 0: return 11; case 1: return 13; case 2: return 17;
    case 3: return 19; case 4: return 23; default: return -1;
    }
}

__attribute__((noinline)) int sum_of_squares(int n) {
    int s = 0;
    for (int i = 1; i <= n; i++)
        s += square(i);
    return s;
}

int main(int argc, char **argv) {
    (void)argv;
    printf("fib(5)=%d sum_of_squares(3)=%d classify=%d\n", fib(5), sum_of_squares(3),
           classify(argc + 1));
    return 0;
}
