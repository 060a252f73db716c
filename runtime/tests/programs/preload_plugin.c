/* A library that preload_main.c loads with dlopen (and unloads with dlclose). */
__attribute__((noinline)) int plugin_leaf(int x) { return x + 7; }
int plugin_entry(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += plugin_leaf(i);
    return s;
}
