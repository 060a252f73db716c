/* threads.c: thread-local storage with pthreads.
 * Each thread works on its own __thread counters; results are printed after the joins, in
 * thread order, so the output is deterministic. Exit status 3. */
#include <pthread.h>
#include <stdio.h>

#define THREADS 4

static __thread int tls_counter = 100;
static __thread char tls_name[16];
__thread long tls_history[8];

static long results[THREADS];
static char names[THREADS][16];

__attribute__((noinline)) static void remember(long value)
{
    tls_history[tls_counter % 8] = value;
    tls_counter++;
}

__attribute__((noinline)) long tls_sum(void)
{
    long sum = 0;
    for (int i = 0; i < 8; i++)
        sum += tls_history[i];
    return sum + tls_counter;
}

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    snprintf(tls_name, sizeof tls_name, "worker-%d", id);
    for (int i = 0; i < 20 + id; i++)
        remember((long)(id + 1) * i);
    results[id] = tls_sum();
    snprintf(names[id], sizeof names[id], "%s", tls_name);
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0)
            return 1;
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++)
        printf("%s: tls_sum=%ld\n", names[i], results[i]);
    printf("main thread: tls_counter=%d tls_sum=%ld\n", tls_counter, tls_sum());
    return 3;
}
