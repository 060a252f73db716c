/* Cost per call: a loop calling an empty traced function N times (argv[1]). */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void empty(void) { __asm__ volatile(""); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    for (long i = 0; i < n; i++) empty();
    printf("done %ld\n", n);
    return 0;
}
