/* Fuzz seed: a few functions with pads, a jump table, a function pointer, a weak function. */
static int helper(int x) { return x * 3 + 1; }
__attribute__((weak)) int weakf(int x) { return x - 1; }
int table[4];
int (*fp)(int) = helper;
int sw(int x) {
  switch (x) { case 0: return 5; case 1: return 7; case 2: return 11; case 3: return 13; case 4: return 17; case 5: return 19; default: return 0; }
}
int loop(int n) { int s = 0; for (int i = 0; i < n; i++) { s += fp(i); if (s > 100) break; } return s; }
void _start(void) {
  int r = loop(table[0]) + sw(table[1]) + weakf(2);
  register long a0 asm("a0") = r; register long a7 asm("a7") = 93;
  asm volatile("ecall" :: "r"(a0), "r"(a7));
  for(;;);
}
