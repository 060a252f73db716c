/* Arguments and return values (PADTRIM_ARGS): fib(n) returns fib(n), add3 takes three
   arguments, neg returns a negative number, threads call fib too. */
#include <pthread.h>
#include <stdio.h>

__attribute__((noinline)) long fib(long n) {
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

__attribute__((noinline)) long add3(long a, long b, long c) {
    return a + b + c;
}

__attribute__((noinline)) int neg(int x) {
    return -x;
}

static void *worker(void *p) {
    long n = (long)p;
    printf("thread fib(%ld)=%ld\n", n, fib(n));
    return 0;
}

int main(void) {
    long f = fib(5);
    long s = add3(1, 20, 300);
    int m = neg(7);
    pthread_t t;
    pthread_create(&t, 0, worker, (void *)3L);
    pthread_join(t, 0);
    printf("fib(5)=%ld add3=%ld neg=%d\n", f, s, m);
    return 0;
}
