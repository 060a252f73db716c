/* -finstrument-functions hooks that do what padtrim's graph mode does: a 24-byte record
   (time from rdtime, function, thread, depth, kind) per entry and per exit into a per-thread
   buffer of 2048 records, written out when full and at exit. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct rec {
    uint64_t time, addr;
    uint32_t tid;
    uint16_t depth;
    uint8_t kind, reserved;
};

#define RECS 2048
static __thread struct rec buf[RECS];
static __thread unsigned len, depth;
static __thread uint32_t tid;
static int fd = -1;

static void flush(void) {
    if (fd >= 0 && len)
        write(fd, buf, len * sizeof buf[0]);
    len = 0;
}

static inline void put(void *fn, uint8_t kind) {
    uint64_t t;
    __asm__ volatile("rdtime %0" : "=r"(t));
    if (!tid)
        tid = (uint32_t)syscall(SYS_gettid);
    if (len == RECS)
        flush();
    struct rec *r = &buf[len++];
    r->time = t;
    r->addr = (uint64_t)(uintptr_t)fn;
    r->tid = tid;
    r->depth = (uint16_t)depth;
    r->kind = kind;
}

void __cyg_profile_func_enter(void *fn, void *site) {
    (void)site;
    put(fn, 0);
    depth++;
}

void __cyg_profile_func_exit(void *fn, void *site) {
    (void)site;
    depth--;
    put(fn, 1);
}

__attribute__((constructor)) static void open_out(void) {
    const char *p = getenv("CYG_OUT");
    fd = open(p ? p : "cyg.trace", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

__attribute__((destructor)) static void close_out(void) { flush(); }
