/* Calls into shlib.c's library; built without pads and without the runtime. */
#include <stdio.h>
int lib_entry(int);
int main(void) {
    printf("lib_entry(2)=%d\n", lib_entry(2));
    return 0;
}
