/* Several threads with the same call graph, enough calls to fill per-thread buffers. */
#include <pthread.h>
#include <stdio.h>

#define THREADS 3
#define CALLS 1500

__attribute__((noinline)) long leaf(long x) { return x + 1; }
__attribute__((noinline)) long work(long x) { return leaf(x) * 2; }
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
