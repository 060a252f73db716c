/* Corpus-like benchmark: make pseudo-random words, count them in a chained hash table,
   sort the distinct words with qsort (a comparator called through libc), print a summary.
   A mix of short and long functions, library calls and allocation (argv[1] = words). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    unsigned count;
    char word[12];
};

static unsigned long seed = 12345;
static struct entry *table[4096];
static unsigned distinct;

__attribute__((noinline)) static unsigned next_rand(void) {
    seed = seed * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned)(seed >> 33);
}

__attribute__((noinline)) static void make_word(char *out) {
    int len = 2 + next_rand() % 4;
    for (int i = 0; i < len; i++)
        out[i] = "etaoinshrdlu"[next_rand() % 12];
    out[len] = 0;
}

__attribute__((noinline)) static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

__attribute__((noinline)) static void add(const char *w) {
    unsigned b = hash(w) % 4096;
    for (struct entry *e = table[b]; e; e = e->next)
        if (strcmp(e->word, w) == 0) {
            e->count++;
            return;
        }
    struct entry *e = malloc(sizeof *e);
    strcpy(e->word, w);
    e->count = 1;
    e->next = table[b];
    table[b] = e;
    distinct++;
}

__attribute__((noinline)) static int by_count(const void *a, const void *b) {
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    char w[12];
    for (int i = 0; i < n; i++) {
        make_word(w);
        add(w);
    }
    struct entry **all = malloc(distinct * sizeof *all);
    unsigned k = 0;
    for (int b = 0; b < 4096; b++)
        for (struct entry *e = table[b]; e; e = e->next)
            all[k++] = e;
    qsort(all, k, sizeof *all, by_count);
    unsigned long sum = 0;
    for (unsigned i = 0; i < k; i++)
        sum = sum * 31 + hash(all[i]->word) + all[i]->count;
    printf("words=%d distinct=%u top=%s:%u checksum=%lu\n", n, k, all[0]->word, all[0]->count, sum);
    return 0;
}
