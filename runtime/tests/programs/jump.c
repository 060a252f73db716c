/* longjmp skips the return hooks of `deep`; the runtime must resync its shadow stack. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;

__attribute__((noinline)) void deep(int n) {
    if (n == 0) longjmp(env, 1);
    deep(n - 1);
    __asm__ volatile("" ::: "memory"); /* keep the recursive call a real call */
}
__attribute__((noinline)) int guarded(void) {
    if (setjmp(env) == 0) {
        deep(3);
        return 0;
    }
    return 1;
}
__attribute__((noinline)) int after(int x) { return x + 40; }

int main(void) {
    int r = guarded();
    printf("guarded=%d after=%d\n", r, after(r + 1));
    return 0;
}
