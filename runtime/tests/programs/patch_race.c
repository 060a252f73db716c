/* Two threads patch and unpatch the slots of two functions at the same time (the functions
   are next to each other, so their slots share a page of text), calling each function between
   changes. Each thread counts the calls of padtrim_enable_function that did not return 0. */
#include <pthread.h>
#include <stdio.h>
#include "padtrim.h"

#define ROUNDS 20000

__attribute__((noinline)) int f1(int x) { return x + 1; }
__attribute__((noinline)) int f2(int x) { return x + 2; }

static void *toggle(void *arg) {
    int (*f)(int) = (int (*)(int))arg;
    long bad = 0, s = 0;
    for (int i = 0; i < ROUNDS; i++) {
        bad += padtrim_enable_function((const void *)f, i & 1) != 0;
        s += f(i);
    }
    return (void *)bad;
}

int main(void) {
    pthread_t t[2];
    pthread_create(&t[0], 0, toggle, (void *)f1);
    pthread_create(&t[1], 0, toggle, (void *)f2);
    long bad = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    printf("bad=%ld\n", bad);
    return bad != 0;
}
