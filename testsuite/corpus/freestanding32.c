/* An RV32 Linux program without a C library (Debian ships none for rv32): its own
 * _start and system calls. Exercises what a rewrite must keep working: direct and
 * recursive calls, calls through function pointers held in data, a jump table, string
 * and table pointers, and an exit status. */

static long sys3(long n, long a, long b, long c)
{
    register long a0 asm("a0") = a;
    register long a1 asm("a1") = b;
    register long a2 asm("a2") = c;
    register long a7 asm("a7") = n;
    asm volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

static unsigned len(const char *s)
{
    unsigned n = 0;
    while (s[n])
        n++;
    return n;
}

__attribute__((noinline)) void say(const char *s) { sys3(64, 1, (long)s, len(s)); }

__attribute__((noinline)) void show(unsigned v)
{
    char buf[16];
    int i = 15;
    buf[i] = 0;
    do {
        buf[--i] = '0' + v % 10;
        v /= 10;
    } while (v);
    say(buf + i);
    say("\n");
}

__attribute__((noinline)) unsigned fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
__attribute__((noinline)) unsigned square(unsigned n) { return n * n; }
__attribute__((noinline)) unsigned triple(unsigned n) { return 3 * n; }

__attribute__((noinline)) const char *kind(unsigned n)
{
    switch (n) {
    case 0: return "zero";
    case 1: return "one";
    case 2: return "two";
    case 3: return "three";
    case 4: return "four";
    case 5: return "five";
    case 6: return "six";
    default: return "many";
    }
}

unsigned (*const ops[])(unsigned) = {fib, square, triple};
const char *const names[] = {"fib", "square", "triple"};

void _start(void)
{
    unsigned sum = 0;
    for (unsigned i = 0; i < 3; i++) {
        unsigned v = ops[i](12 + i);
        say(names[i]);
        say(" ");
        show(v);
        sum += v;
    }
    for (unsigned i = 0; i < 8; i++) {
        say(kind(i));
        say(i == 7 ? "\n" : " ");
    }
    show(sum);
    sys3(93, sum % 251, 0, 0);
}
