/* More padded functions for the library that carries the runtime
   (a_library_linked_with_the_runtime_is_traced_once_by_the_preloaded_copy in
   cli/tests/preload.rs), never called: with only preload_lib.c's two pads, whether the
   rewrite finds room for the __mcount_loc table in the freed bytes (16 bytes, 8-aligned, out
   of 24 less alignment) depends on where the runtime's code size puts the pads. */
int more_a(int x) { return x + 1; }
int more_b(int x) { return x * 5; }
int more_c(int x) { return x - 9; }
int more_d(int x) { return x ^ 3; }
