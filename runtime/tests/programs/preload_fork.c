/* A program that forks: before the fork main 1, both 1; the child child_work 4, lib_entry 4,
   lib_leaf 8 (it ends with exit); the parent, after waiting for it, parent_work 3. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int lib_entry(int);

__attribute__((noinline)) int both(int x) { return x ^ 1; }
__attribute__((noinline)) int child_work(int x) { return x * 2; }
__attribute__((noinline)) int parent_work(int x) { return x + 1; }

int main(void) {
    int a = both(1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 3;
    if (pid == 0) {
        int s = 0;
        for (int i = 0; i < 4; i++) s += child_work(i) + lib_entry(i);
        printf("child %d\n", s);
        exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int s = a;
    for (int i = 0; i < 3; i++) s += parent_work(i);
    printf("parent %d child-status %d\n", s, WEXITSTATUS(status));
    return 0;
}
