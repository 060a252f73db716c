/* use_shared.c: a program linked against the corpus shared library (see shared_lib.c).
 * Passes callbacks into the library and calls through the PLT. Exit status 3. */
#include <stdio.h>

int shared_apply(int (*callback)(int), int n);
int shared_calls(void);
int shared_loaded(void);
const char *shared_name(void);
int shared_fib(int n);

static int plus_one(int x) { return x + 1; }
static int squared(int x) { return x * x; }

int main(void)
{
    printf("library %s loaded=%d\n", shared_name(), shared_loaded());
    printf("apply(plus_one, 10)=%d\n", shared_apply(plus_one, 10));
    printf("apply(squared, 6)=%d\n", shared_apply(squared, 6));
    printf("calls=%d shared_fib(18)=%d\n", shared_calls(), shared_fib(18));
    fprintf(stderr, "use_shared: done\n");
    return 3;
}
