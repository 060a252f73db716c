/* A shared library that carries the runtime itself (the executable knows nothing of it). */
__attribute__((noinline)) int lib_leaf(int x) { return x * 3; }
int lib_entry(int x) { return lib_leaf(x) + lib_leaf(x + 1); }
