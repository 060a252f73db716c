/* control.c: non-local control flow and process lifetime hooks.
 * setjmp/longjmp across several frames, constructors with priorities, destructors, atexit
 * handlers. Output order is fixed by the C library, so it is deterministic. Exit status 3. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

static jmp_buf escape;
static int depth_reached;
static int init_order[4];
static int init_count;

__attribute__((constructor(101))) static void early_init(void) { init_order[init_count++] = 101; }
__attribute__((constructor(202))) static void late_init(void) { init_order[init_count++] = 202; }
__attribute__((constructor)) static void default_init(void) { init_order[init_count++] = 999; }

__attribute__((destructor)) static void say_goodbye(void) { printf("destructor: goodbye\n"); }

static void first_handler(void) { printf("atexit: first registered, runs last\n"); }
static void second_handler(void) { printf("atexit: second registered, runs first\n"); }

__attribute__((noinline)) static void dive(int depth, int limit)
{
    depth_reached = depth;
    if (depth == limit)
        longjmp(escape, depth * 10 + 1);
    dive(depth + 1, limit);
    printf("never printed\n");
}

__attribute__((noinline)) int try_dive(int limit)
{
    int code = setjmp(escape);
    if (code == 0) {
        dive(0, limit);
        return -1;
    }
    return code;
}

/* Ackermann: deep, non-tail recursion. */
__attribute__((noinline)) unsigned ack(unsigned m, unsigned n)
{
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

int main(void)
{
    atexit(first_handler);
    atexit(second_handler);
    printf("constructors ran: %d:", init_count);
    for (int i = 0; i < init_count; i++)
        printf(" %d", init_order[i]);
    printf("\n");
    for (int limit = 1; limit <= 5; limit += 2) {
        int code = try_dive(limit);
        printf("longjmp from depth %d returned %d\n", depth_reached, code);
    }
    printf("ack(2,3)=%u ack(3,3)=%u\n", ack(2, 3), ack(3, 3));
    fprintf(stderr, "control: leaving main\n");
    return 3;
}
