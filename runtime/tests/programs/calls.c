/* Known call graph: nesting, siblings, recursion, a call through a function pointer, and
   floating-point arguments/results that the trampoline and return hook must preserve. */
#include <stdio.h>

__attribute__((noinline)) int leaf(int x) { return x * 2; }
__attribute__((noinline)) int mid(int x) { return leaf(x) + leaf(x + 1); }
__attribute__((noinline)) int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }
__attribute__((noinline)) int via_ptr(int (*f)(int), int x) { return f(x); }
__attribute__((noinline)) double mix(int a, double b, int c, double d, int e, double f,
                                     int g, double h, int i, double j) {
    return a + b * 2 + c + d * 3 + e + f * 4 + g + h * 5 + i + j * 6;
}

int main(void) {
    int s = mid(1);
    s += fact(4);
    s += via_ptr(leaf, 5);
    double m = mix(1, 0.5, 2, 0.25, 3, 0.125, 4, 1.5, 5, 2.5);
    printf("s=%d m=%.4f\n", s, m);
    return s % 7;
}
