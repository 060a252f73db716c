/* The runtime's C API (runtime/include/padtrim.h): stop/start recording, unpatch/repatch one
   function, a handler registered for one function. The program checks what it can see itself
   (return codes, handler arguments) and prints it; the test checks the trace. */
#include <stdio.h>
#include "padtrim.h"

__attribute__((noinline)) int a(int x) { return x + 1; }
__attribute__((noinline)) int b(int x) { return x * 2; }
__attribute__((noinline)) int c(int x) { return x - 3; }

static int handler_calls;
static const void *handler_func;
static const void *handler_caller;

__attribute__((noinline)) void on_b(const void *func, const void *caller) {
    handler_calls++;
    handler_func = func;
    handler_caller = caller;
}

/* The handler's `caller` must be the return address of this call. */
__attribute__((noinline)) int call_b_here(int x) { return b(x) + 1; }

int main(void) {
    int s = 0, bad = 0;
    s += a(1);
    s += b(2);
    s += c(3);
    padtrim_set_enabled(0);
    s += a(4); /* not recorded */
    s += b(5); /* not recorded */
    padtrim_set_enabled(1);
    bad |= padtrim_enable_function((const void *)c, 0) != 0;
    s += c(6); /* not recorded: c is a nop again */
    s += a(7);
    bad |= (padtrim_enable_function((const void *)c, 1) != 0) << 1;
    s += c(8);
    bad |= (padtrim_enable_function((const void *)&s, 1) != -1) << 2; /* not a slot */
    bad |= (padtrim_enable_function((const void *)((const char *)a + 4), 1) != -1) << 3;
    bad |= (padtrim_register_handler((const void *)b, on_b) != 0) << 4;
    s += call_b_here(9); /* handler runs once */
    bad |= (padtrim_register_handler((const void *)b, 0) != 0) << 5;
    s += b(10); /* recorded, no handler */
    bad |= (padtrim_register_handler((const void *)&s, on_b) != -1) << 6;
    printf("s=%d bad=%d handler_calls=%d func_is_b=%d caller=%p\n", s, bad, handler_calls,
           handler_func == (const void *)b, handler_caller);
    return bad;
}
