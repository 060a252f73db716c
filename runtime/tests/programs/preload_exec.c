/* A program that runs a shell command: the command must not inherit the preloaded runtime
   (it would start tracing over the same file). Calls: main 1, before 1, after 1. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int before(int x) { return x + 1; }
__attribute__((noinline)) int after(int x) { return x * 2; }

int main(void) {
    int a = before(1);
    fflush(stdout);
    int r = system("echo \"child LD_PRELOAD=[$LD_PRELOAD]\"");
    printf("a=%d r=%d b=%d\n", a, r, after(a));
    return 0;
}
