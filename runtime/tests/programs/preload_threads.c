/* Threads calling into the program and its library (preload_lib.c): per thread,
   thread_main 1, work CALLS, leaf CALLS, lib_entry CALLS, lib_leaf 2*CALLS. */
#include <pthread.h>
#include <stdio.h>

#define THREADS 3
#define CALLS 1500

int lib_entry(int);

__attribute__((noinline)) long leaf(long x) { return x + 1; }
__attribute__((noinline)) long work(long x) { return leaf(x) * 2 + lib_entry((int)(x & 7)); }
__attribute__((noinline)) void *thread_main(void *arg) {
    long sum = 0;
    for (long i = 0; i < CALLS; i++) sum += work(i + (long)arg);
    return (void *)sum;
}

int main(void) {
    pthread_t t[THREADS];
    long total = 0;
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], 0, thread_main, (void *)i);
    for (long i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    printf("total=%ld\n", total);
    return 0;
}
