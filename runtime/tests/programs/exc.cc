// C++ exceptions thrown through traced frames and caught two traced frames up.
#include <cstdio>
#include <stdexcept>

__attribute__((noinline)) int thrower(int n) {
    if (n > 2) throw std::runtime_error("too big");
    return n;
}
__attribute__((noinline)) int middle(int n) { return thrower(n) + 1; }
__attribute__((noinline)) int catcher(int n) {
    try {
        return middle(n);
    } catch (const std::exception &e) {
        std::printf("caught %s\n", e.what());
        return -1;
    }
}
__attribute__((noinline)) int after(int x) { return x * 3; }

int main() {
    int a = catcher(1);
    int b = catcher(5);
    std::printf("a=%d b=%d after=%d\n", a, b, after(a + b));
    return 0;
}
