/* A program with a linked library (preload_lib.c) and a plugin loaded with dlopen
   (preload_plugin.c, path in argv[1]) twice, unloaded after each use; the preloaded runtime
   traces all three. Calls: main 1, lib_entry 1, lib_leaf 2, plugin_entry 2 (one per load),
   plugin_leaf 5, main_leaf 2. */
#include <dlfcn.h>
#include <stdio.h>

int lib_entry(int);

__attribute__((noinline)) int main_leaf(int x) { return x - 1; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int a = lib_entry(2);
    int b = 0;
    for (int round = 0; round < 2; round++) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) {
            fprintf(stderr, "%s\n", dlerror());
            return 3;
        }
        int (*entry)(int) = (int (*)(int))dlsym(h, "plugin_entry");
        b += entry(3 - round);
        dlclose(h);
    }
    int c = main_leaf(5) + main_leaf(6);
    printf("a=%d b=%d c=%d\n", a, b, c);
    return 0;
}
