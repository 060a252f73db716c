/* portable.c: builds for RV32 as well as RV64. There is no rv32 C library on Debian, so this
 * file includes only compiler headers and declares the few libc functions it calls itself;
 * its rv32 objects are scanned, not linked. The rv64 build links and runs (exit status 3).
 * Covers: a dense switch (jump table), recursion, function pointers, varargs, computed goto,
 * static/inline functions, an over-aligned function. */
#include <stdarg.h>
#include <stddef.h>

int printf(const char *fmt, ...);

static inline unsigned rotl(unsigned x, unsigned r) { return (x << r) | (x >> (32 - r)); }

static unsigned mix(unsigned h, unsigned v) { return rotl(h ^ v, 5) * 0x9e3779b1u; }

__attribute__((noinline)) int weekday_kind(int d)
{
    switch (d) {
    case 0: return 10;
    case 1: return 21;
    case 2: return 32;
    case 3: return 43;
    case 4: return 54;
    case 5: return 65;
    case 6: return 76;
    case 7: return 87;
    default: return -1;
    }
}

unsigned tri(unsigned n) { return n == 0 ? 0 : n + tri(n - 1); }

typedef unsigned (*step_fn)(unsigned, unsigned);
__attribute__((noinline)) unsigned run_steps(step_fn f, unsigned seed, int n)
{
    for (int i = 0; i < n; i++)
        seed = f(seed, (unsigned)i);
    return seed;
}

int total(int n, ...)
{
    va_list ap;
    int s = 0;
    va_start(ap, n);
    while (n--)
        s += va_arg(ap, int);
    va_end(ap);
    return s;
}

__attribute__((aligned(32), noinline)) int aligned32(int x) { return x + 32; }

__attribute__((noinline)) int threaded(const unsigned char *code)
{
    static void *const labels[] = {&&done, &&add1, &&add10};
    int acc = 0;
    goto *labels[*code++];
add1:
    acc += 1;
    goto *labels[*code++];
add10:
    acc += 10;
    goto *labels[*code++];
done:
    return acc;
}

int main(void)
{
    static const unsigned char code[] = {2, 1, 2, 1, 1, 0};
    int kinds = 0;
    for (int d = -1; d < 9; d++)
        kinds += weekday_kind(d);
    printf("kinds=%d tri(30)=%u\n", kinds, tri(30));
    printf("steps=%u total=%d\n", run_steps(mix, 7, 100), total(4, 10, 20, 30, 40));
    printf("aligned32=%d threaded=%d\n", aligned32(10), threaded(code));
    return 3;
}
