/* A shared library of the program in preload_main.c (linked: DT_NEEDED), built with pads
   and rewritten, not linked with the runtime. Its calls to its own exported function go
   through its PLT. */
__attribute__((noinline)) int lib_leaf(int x) { return x * 3; }
int lib_entry(int x) { return lib_leaf(x) + lib_leaf(x + 1); }
