/* The bundled example: a few functions with 16-byte patchable entries. */
#include <stdio.h>

static int square(int x) { return x * x; }
int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int classify(int x) {
    switch (x) {
    case 0: return 11; case 1: return 13; case 2: return 17;
    case 3: return 19; case 4: return 23; default: return -1;
    }
}
int main(int argc, char **argv) {
    (void)argv;
    printf("fib(20)=%d square=%d classify=%d\n", fib(20), square(argc + 6), classify(argc + 1));
    return 0;
}
