/* basic.c: the everyday shapes of C code a pad rewriter must survive.
 * static and inline functions, a dense switch (jump table), function pointers and qsort
 * callbacks, recursion (fib, mutual recursion), varargs, an over-aligned function, computed
 * goto. Prints deterministic output and exits with status 3. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int counter;

/* A static function whose address never escapes. */
static int bump(int by)
{
    counter += by;
    return counter;
}

static inline int square(int x) { return x * x; }

__attribute__((noinline)) static int cube(int x) { return x * square(x); }

int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int is_odd(unsigned n);
int is_even(unsigned n) { return n == 0 ? 1 : is_odd(n - 1); }
int is_odd(unsigned n) { return n == 0 ? 0 : is_even(n - 1); }

/* Dense cases: GCC lowers this to a jump table (R_RISCV_32/64 or PC-relative entries). */
__attribute__((noinline)) int classify(int op, int a, int b)
{
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return b ? a / b : -1;
    case 4: return b ? a % b : -1;
    case 5: return a & b;
    case 6: return a | b;
    case 7: return a ^ b;
    case 8: return a << (b & 7);
    case 9: return a >> (b & 7);
    case 10: return a > b ? a : b;
    case 11: return a < b ? a : b;
    default: return 0;
    }
}

static int cmp_ascending(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_descending(const void *a, const void *b) { return cmp_ascending(b, a); }

typedef int (*binop)(int, int);
static int op_add(int a, int b) { return a + b; }
static int op_sub(int a, int b) { return a - b; }
static int op_mul(int a, int b) { return a * b; }
int op_max(int a, int b) { return a > b ? a : b; }

__attribute__((noinline)) int fold(binop f, const int *v, int n, int init)
{
    int acc = init;
    for (int i = 0; i < n; i++)
        acc = f(acc, v[i]);
    return acc;
}

/* Varargs: a list of ints terminated by count, and a printf-like wrapper. */
int sum_ints(int count, ...)
{
    va_list ap;
    int total = 0;
    va_start(ap, count);
    for (int i = 0; i < count; i++)
        total += va_arg(ap, int);
    va_end(ap);
    return total;
}

__attribute__((format(printf, 2, 3))) static int say(const char *tag, const char *fmt, ...)
{
    va_list ap;
    int n = printf("[%s] ", tag);
    va_start(ap, fmt);
    n += vprintf(fmt, ap);
    va_end(ap);
    return n;
}

/* Over-aligned function: its entry (and pad) must stay 64-byte aligned. */
__attribute__((aligned(64), noinline)) int aligned_fn(int x) { return x * 7 + 1; }

/* Computed goto: a tiny bytecode interpreter with a label-address table. */
__attribute__((noinline)) long interpret(const unsigned char *code, long acc)
{
    static void *const ops[] = {&&op_halt, &&op_inc, &&op_dbl, &&op_neg, &&op_sq};
    unsigned pc = 0;
#define NEXT goto *ops[code[pc++]]
    NEXT;
op_inc:
    acc += 1;
    NEXT;
op_dbl:
    acc *= 2;
    NEXT;
op_neg:
    acc = -acc;
    NEXT;
op_sq:
    acc = acc * acc;
    NEXT;
op_halt:
    return acc;
#undef NEXT
}

int main(int argc, char **argv)
{
    (void)argv;
    int v[] = {42, 7, -3, 19, 0, 88, 5, 23, -11, 64};
    int n = (int)(sizeof v / sizeof v[0]);
    char line[128];

    say("fib", "fib(20)=%d fib(25)=%d\n", fib(20), fib(25));
    say("parity", "even(10)=%d odd(10)=%d even(7)=%d\n", is_even(10), is_odd(10), is_even(7));
    for (int op = 0; op < 13; op++)
        printf("classify(%d,29,5)=%d\n", op, classify(op, 29, 5));

    qsort(v, n, sizeof v[0], cmp_ascending);
    line[0] = 0;
    for (int i = 0; i < n; i++)
        sprintf(line + strlen(line), "%d ", v[i]);
    say("asc", "%s\n", line);
    qsort(v, n, sizeof v[0], cmp_descending);
    say("desc", "first=%d last=%d\n", v[0], v[n - 1]);

    binop ops[] = {op_add, op_sub, op_mul, op_max};
    for (int i = 0; i < 4; i++)
        printf("fold[%d]=%d\n", i, fold(ops[i], v, 5, 1));

    printf("sum_ints=%d\n", sum_ints(5, 1, 2, 3, 4, argc));
    /* With -fpatchable-function-entry=N,M GCC aligns the pad, not the symbol, so only the
     * 4-byte alignment of the entry is the same in every build of this file. */
    printf("aligned_fn(6)=%d aligned4=%d\n", aligned_fn(6), (int)(((unsigned long)&aligned_fn) % 4 == 0));
    static const unsigned char prog[] = {1, 2, 2, 4, 3, 1, 0};
    printf("interpret=%ld\n", interpret(prog, 2));
    for (int i = 1; i <= 4; i++)
        bump(cube(i));
    printf("counter=%d\n", counter);
    fprintf(stderr, "basic: done\n");
    return 3;
}
