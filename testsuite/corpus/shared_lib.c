/* shared_lib.c: a shared library (-shared -fPIC) used by use_shared.c.
 * Exports functions that call back into the program, keeps state in thread-local storage
 * (general-dynamic TLS in a .so), and has an internal static helper and a constructor. */
#include <stdio.h>

static int loaded;
static __thread int calls;

__attribute__((constructor)) static void lib_init(void) { loaded = 42; }

static int twice(int x) { return 2 * x; }

int shared_apply(int (*callback)(int), int n)
{
    int total = 0;
    calls++;
    for (int i = 0; i < n; i++)
        total += callback(twice(i));
    return total;
}

int shared_calls(void) { return calls; }

int shared_loaded(void) { return loaded; }

const char *shared_name(void) { return "padtrim-corpus-lib"; }

int shared_fib(int n) { return n < 2 ? n : shared_fib(n - 1) + shared_fib(n - 2); }
