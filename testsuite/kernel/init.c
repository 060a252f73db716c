/*
 * PID 1 of padtrim's kernel-check initramfs (riscv64, static).
 *
 * It checks that dynamic ftrace works on the booted kernel, which is what a pad rewrite can
 * break: for each of the tracers "function" and "function_graph" it filters a few named
 * kernel functions (set_ftrace_filter), triggers them with read/write/open syscalls, stops
 * tracing and checks that the trace names only filtered functions and names each of them.
 * Results are console lines starting with "PADTRIM-"; scripts/kernel-boot collects them:
 *   PADTRIM-TRACE-CHECK: PASS <tracer> ...     or     PADTRIM-TRACE-CHECK: FAIL <reason>
 * Then it powers the machine off, so qemu exits.
 *
 * Self-test of the checker: booted with "padtrim_selftest=foreign" on the kernel command line
 * (the kernel hands it to init as an environment variable), it also filters a function that
 * its own list does not expect (vfs_read, called by ksys_read), so both checks must FAIL.
 *
 * Modules: when the initramfs has /modules/order (make-initramfs writes it when given .ko
 * files: padtrim's own modules, testsuite/kernel/modules/), it then also
 *   - filters every function of each module before it is loaded ("*:mod:NAME", which ftrace
 *     applies at load time), starts the function tracer and loads the modules in that order
 *     (finit_module): their init functions must show in the trace;
 *   - pokes them through /proc/padtrim_a and /sys/kernel/debug/padtrim_b/poke: the poked
 *     functions must show in the trace, and nothing that is not the modules';
 *   - checks two tables the loader applied: a faulting user access in padtrim_a is fixed
 *     up through its __ex_table (EFAULT), and its .alternative patches took (alt=7);
 *   - traces the poked functions by name with function_graph, pokes again and checks that;
 *   - removes them (delete_module, in reverse order) while tracing NAME_bye, the function
 *     each module's exit function calls (__exit functions are notrace): one trace line per
 *     module; the files they made must be gone after.
 * "PADTRIM-MODULE:" lines report what the modules answered (compared between boots).
 *
 * Cost of patching: with no filter it times "echo function > current_tracer" (every
 * function's slot enabled) and "echo nop > current_tracer" (all disabled), best of 3:
 *   PADTRIM-FTRACE: enable_all_us=N disable_all_us=M
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TRACING "/sys/kernel/tracing"
#define DEBUGFS "/sys/kernel/debug"
#define MODULES "/modules"
#define MAX_FUNCS 3
#define MAX_MODULES 8

/* Candidate functions per syscall, best first: the first one the kernel lists in
 * available_filter_functions is used. Static ones may be inlined away by -Os. */
static const char *const candidates[MAX_FUNCS][5] = {
    {"ksys_read", "vfs_read", NULL},
    {"ksys_write", "vfs_write", NULL},
    {"do_sys_openat2", "do_sys_open", "do_filp_open", "getname_flags", NULL},
};

static const char *chosen[MAX_FUNCS];
static const char *foreign; /* self-test: filtered on purpose but not expected */
static int failures;
static char buf[4 << 20]; /* whole trace / available_filter_functions (bss: costs no file size) */

/* Print one console line. */
static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    (void)!write(1, line, n);
}

/* Print a FAIL line for the check named `what` and count it. */
static void fail(const char *what, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    say("PADTRIM-TRACE-CHECK: FAIL %s: %s", what, reason);
    failures++;
}

/* Write `text` to a tracefs file (truncating it); returns 0 or an errno value. */
static int put(const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, TRACING "/%s", file);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    size_t len = strlen(text), done = 0;
    /* set_ftrace_filter takes one word per write() and reports a short count: loop. */
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            break;
        }
        done += n;
    }
    close(fd);
    return err;
}

/* Read a whole file into buf (NUL-terminated); returns its length or -1. */
static long slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += n;
        if (len == (long)sizeof buf - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    return len;
}

/* Mount a filesystem, creating its mount point; reports failures. */
static void mount_fs(const char *type, const char *dir)
{
    mkdir(dir, 0755);
    if (mount(type, dir, type, 0, NULL) != 0 && errno != EBUSY)
        say("PADTRIM-INIT: mount %s on %s failed: %s", type, dir, strerror(errno));
}

/* Does a line of available_filter_functions name exactly `name`? ("name" or "name [mod]") */
static int names(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len >= n && memcmp(line, name, n) == 0 && (len == n || line[n] == ' ');
}

/* Count available_filter_functions and pick one traceable function per syscall. */
static int choose_functions(void)
{
    long len = slurp(TRACING "/available_filter_functions");
    if (len < 0) {
        fail("setup", "cannot read available_filter_functions: %s", strerror(errno));
        return -1;
    }
    long count = 0;
    int best[MAX_FUNCS] = {99, 99, 99};
    for (char *line = buf; line < buf + len;) {
        char *end = memchr(line, '\n', buf + len - line);
        if (!end)
            end = buf + len;
        count++;
        for (int g = 0; g < MAX_FUNCS; g++)
            for (int c = 0; c < best[g] && candidates[g][c]; c++)
                if (names(line, end - line, candidates[g][c])) {
                    best[g] = c;
                    chosen[g] = candidates[g][c];
                }
        line = end + 1;
    }
    say("PADTRIM-FTRACE: available_filter_functions=%ld", count);
    for (int g = 0; g < MAX_FUNCS; g++)
        if (!chosen[g]) {
            fail("setup", "none of the candidates for %s is traceable", candidates[g][0]);
            return -1;
        }
    say("PADTRIM-TRACE-FUNCS: %s %s %s", chosen[0], chosen[1], chosen[2]);
    return 0;
}

/* Print a small tracefs file on one line, e.g. dyn_ftrace_total_info. */
static void show(const char *file)
{
    char path[256];
    snprintf(path, sizeof path, TRACING "/%s", file);
    long len = slurp(path);
    if (len < 0) {
        say("PADTRIM-FTRACE: %s unreadable: %s", file, strerror(errno));
        return;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    say("PADTRIM-FTRACE: %s=%s", file, buf);
}

/* Count lines of a tracefs file (e.g. enabled_functions); -1 when unreadable. */
static long count_lines(const char *file)
{
    char path[256];
    snprintf(path, sizeof path, TRACING "/%s", file);
    long len = slurp(path), lines = 0;
    if (len < 0)
        return -1;
    for (long i = 0; i < len; i++)
        lines += buf[i] == '\n';
    if (len > 0 && buf[len - 1] != '\n')
        lines++;
    return lines;
}

/* The syscalls that run the filtered functions: open (openat), read and write, a few times. */
static void trigger(void)
{
    char small[64];
    for (int i = 0; i < 3; i++) {
        int fd = open("/proc/version", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!read(fd, small, sizeof small);
            close(fd);
        }
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            (void)!write(null, "padtrim\n", 8);
            close(null);
        }
    }
}

/*
 * The function name a trace line reports, or NULL for lines that carry none.
 *   function:        "  init-1  [000] .....  12.345678: ksys_read <-__riscv_sys_read"
 *   function_graph:  " 0)   1.234 us    |  ksys_read();"   or   " 0)  |  ksys_read() {"
 *                    (6.12, a module's function: " 0)  |  padtrim_a_poke [padtrim_a]() {")
 * `*bad` is set for a line of the function tracer that does not have that shape.
 */
static const char *traced_name(char *line, int graph, int *bad, char *name, size_t cap)
{
    const char *start, *end;
    *bad = 0;
    if (line[0] == '#' || line[0] == '\0')
        return NULL;
    if (!graph) {
        end = strstr(line, " <-");
        if (!end) {
            *bad = 1;
            return NULL;
        }
        start = end;
        while (start > line && start[-1] != ' ')
            start--;
    } else {
        const char *bar = strchr(line, '|');
        if (!bar)
            return NULL; /* "------" / CPU switch separators */
        end = strstr(bar, "()");
        if (!end)
            return NULL; /* "}" closing lines */
        start = end;
        while (start > bar + 1 && start[-1] != ' ')
            start--;
        /* 6.12 names a module's function "name [module]()": take the word before. */
        if (*start == '[' && end[-1] == ']' && start > bar + 2) {
            end = start - 1;
            start = end;
            while (start > bar + 1 && start[-1] != ' ')
                start--;
        }
    }
    size_t n = end - start;
    if (n == 0 || n >= cap) {
        *bad = 1;
        return NULL;
    }
    memcpy(name, start, n);
    name[n] = '\0';
    return name;
}

/* Run one tracer over the chosen functions and check what it recorded. */
static void check_tracer(const char *tracer)
{
    int graph = strcmp(tracer, "function_graph") == 0;
    char filter[256];
    int err;
    snprintf(filter, sizeof filter, "%s %s %s%s%s", chosen[0], chosen[1], chosen[2],
             foreign ? " " : "", foreign ? foreign : "");
    int want = MAX_FUNCS + (foreign != NULL);

    if ((err = put("current_tracer", "nop")) || (err = put("set_ftrace_filter", filter))) {
        fail(tracer, "cannot set the filter: %s", strerror(err));
        return;
    }
    long filtered = count_lines("set_ftrace_filter");
    if (filtered != want) {
        fail(tracer, "set_ftrace_filter has %ld entries, expected %d", filtered, want);
        return;
    }
    put("trace", ""); /* clear the ring buffer */
    if ((err = put("current_tracer", tracer)) || (err = put("tracing_on", "1"))) {
        fail(tracer, "cannot start the tracer: %s", strerror(err));
        put("current_tracer", "nop");
        return;
    }
    long enabled = count_lines("enabled_functions"); /* the patched call sites */
    trigger();
    put("tracing_on", "0");
    long len = slurp(TRACING "/trace");
    put("current_tracer", "nop");
    put("tracing_on", "1");
    if (len < 0) {
        fail(tracer, "cannot read trace: %s", strerror(errno));
        return;
    }

    long hits[MAX_FUNCS] = {0}, lines = 0, before = failures;
    char name[128];
    for (char *line = buf; line < buf + len;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        int bad;
        const char *fn = traced_name(line, graph, &bad, name, sizeof name);
        if (bad && failures - before < 3)
            fail(tracer, "unparsable trace line: %.200s", line);
        if (fn) {
            lines++;
            int g = 0;
            while (g < MAX_FUNCS && strcmp(fn, chosen[g]) != 0)
                g++;
            if (g < MAX_FUNCS)
                hits[g]++;
            else if (failures - before < 3)
                fail(tracer, "traced function %s is not in the filter", fn);
        }
        if (!end)
            break;
        line = end + 1;
    }
    for (int g = 0; g < MAX_FUNCS; g++)
        if (hits[g] == 0)
            fail(tracer, "%s was called but not traced", chosen[g]);
    if (enabled != want)
        fail(tracer, "enabled_functions has %ld entries, expected %d", enabled, want);
    if (failures == before)
        say("PADTRIM-TRACE-CHECK: PASS %s (%s=%ld %s=%ld %s=%ld; %ld traced lines, "
            "%ld enabled functions)",
            tracer, chosen[0], hits[0], chosen[1], hits[1], chosen[2], hits[2], lines, enabled);
}

/* ---- Modules ---- */

static char module_names[MAX_MODULES][64]; /* from /modules/order: "padtrim_a" ... */
static int module_count;

/* Read /modules/order (one .ko file name a line); returns the number of modules. */
static int read_module_order(void)
{
    long len = slurp(MODULES "/order");
    if (len < 0)
        return 0;
    for (char *line = buf; line < buf + len && module_count < MAX_MODULES;) {
        char *end = memchr(line, '\n', buf + len - line);
        if (!end)
            end = buf + len;
        size_t n = end - line;
        if (n > 3 && n < sizeof module_names[0] && memcmp(end - 3, ".ko", 3) == 0) {
            memcpy(module_names[module_count], line, n - 3);
            module_names[module_count][n - 3] = '\0';
            module_count++;
        }
        line = end + 1;
    }
    return module_count;
}

/* Is `name` a function of padtrim's modules (they all start with "padtrim_")? */
static int module_function(const char *name)
{
    return strncmp(name, "padtrim_", 8) == 0 || strcmp(name, "init_module") == 0 ||
           strcmp(name, "cleanup_module") == 0;
}

/* Write `text` to a file that is not in tracefs; returns 0 or an errno value. */
static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n < 0 ? errno : n != (ssize_t)strlen(text) ? EIO : 0;
    close(fd);
    return err;
}

/* Poke both modules once (number `n`) and report what they answer. */
static void poke_modules(const char *what, long n)
{
    char text[32];
    int err;
    snprintf(text, sizeof text, "%ld\n", n);
    if ((err = write_file("/proc/padtrim_a", text)))
        fail(what, "write /proc/padtrim_a: %s", strerror(err));
    if ((err = write_file(DEBUGFS "/padtrim_b/poke", text)))
        fail(what, "write " DEBUGFS "/padtrim_b/poke: %s", strerror(err));
    long len = slurp("/proc/padtrim_a");
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    say("PADTRIM-MODULE: after %s: /proc/padtrim_a: %s", what, len < 0 ? "unreadable" : buf);
    len = slurp(DEBUGFS "/padtrim_b/poke");
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    say("PADTRIM-MODULE: after %s: padtrim_b/poke: %s", what, len < 0 ? "unreadable" : buf);
}

/*
 * Read the trace and check it: every traced function is one of the modules' (`module_only`)
 * and every name of `want` (NULL-terminated; "a|b" accepts either) shows up. Returns the
 * number of traced lines, or -1 after a failure.
 */
static long check_module_trace(const char *what, int graph, const char *const *want)
{
    long len = slurp(TRACING "/trace");
    if (len < 0) {
        fail(what, "cannot read trace: %s", strerror(errno));
        return -1;
    }
    long lines = 0, before = failures;
    int seen[16] = {0};
    char name[128];
    for (char *line = buf; line < buf + len;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        int bad;
        const char *fn = traced_name(line, graph, &bad, name, sizeof name);
        if (bad && failures - before < 3)
            fail(what, "unparsable trace line: %.200s", line);
        if (fn) {
            lines++;
            if (!module_function(fn) && failures - before < 3)
                fail(what, "traced function %s is not the modules': %.160s", fn, line);
            for (int w = 0; want[w]; w++) {
                const char *alt = want[w];
                while (*alt) {
                    size_t n = strcspn(alt, "|");
                    if (strlen(fn) == n && memcmp(fn, alt, n) == 0)
                        seen[w]++;
                    alt += n + (alt[n] == '|');
                }
            }
        }
        if (!end)
            break;
        line = end + 1;
    }
    for (int w = 0; want[w]; w++)
        if (!seen[w])
            fail(what, "%s was called but not traced", want[w]);
    return failures == before ? lines : -1;
}

/* Load the modules with every function of theirs filtered beforehand, poke them. */
static int load_modules(void)
{
    const char *what = "module-load-function";
    char filter[MAX_MODULES * 80] = "";
    int err;
    for (int m = 0; m < module_count; m++) {
        size_t used = strlen(filter);
        snprintf(filter + used, sizeof filter - used, "%s*:mod:%s", m ? " " : "",
                 module_names[m]);
    }
    if ((err = put("current_tracer", "nop")) || (err = put("set_ftrace_filter", filter))) {
        fail(what, "cannot set the filter %s: %s", filter, strerror(err));
        return -1;
    }
    put("trace", "");
    if ((err = put("current_tracer", "function")) || (err = put("tracing_on", "1"))) {
        fail(what, "cannot start the tracer: %s", strerror(err));
        return -1;
    }
    for (int m = 0; m < module_count; m++) {
        char path[sizeof module_names + 16]; /* (GCC cannot bound one name's length) */
        snprintf(path, sizeof path, MODULES "/%s.ko", module_names[m]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) {
            fail(what, "cannot load %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            put("tracing_on", "0");
            put("current_tracer", "nop");
            return -1;
        }
        close(fd);
        say("PADTRIM-MODULE: loaded %s", module_names[m]);
    }
    long enabled = count_lines("enabled_functions");
    poke_modules("first poke", 5);
    put("tracing_on", "0");
    static const char *const want[] = {"padtrim_a_init|init_module", "padtrim_b_init|init_module",
                                       "padtrim_a_poke", "padtrim_a_add", "padtrim_b_poke",
                                       NULL};
    long lines = check_module_trace(what, 0, want);
    put("current_tracer", "nop");
    put("tracing_on", "1");
    if (lines >= 0)
        say("PADTRIM-TRACE-CHECK: PASS %s (%ld traced lines, %ld enabled functions, "
            "init functions traced)",
            what, lines, enabled);
    return 0;
}

/*
 * What the loader did with the modules' own tables: a user access that faults must be fixed
 * up through padtrim_a's __ex_table (the write fails with EFAULT, no oops), and the code it
 * patched through .alternative must answer alt=7 (see padtrim_a.c).
 */
static void check_module_tables(void)
{
    const char *what = "module-tables";
    long before = failures;
    int err = write_file("/proc/padtrim_a", "fault\n");
    if (err != EFAULT)
        fail(what, "write \"fault\" to /proc/padtrim_a: %s, expected EFAULT",
             err ? strerror(err) : "no error");
    long len = slurp("/proc/padtrim_a");
    if (len < 0 || !strstr(buf, " alt=7"))
        fail(what, "/proc/padtrim_a does not say alt=7 (.alternative not applied?): %.100s",
             len < 0 ? "unreadable" : buf);
    if (failures == before)
        say("PADTRIM-TRACE-CHECK: PASS %s (__ex_table fixup: EFAULT; .alternative: alt=7)", what);
}

/* function_graph on the poked functions, by name. */
static void graph_modules(void)
{
    const char *what = "module-function_graph";
    int err;
    if ((err = put("set_ftrace_filter", "padtrim_a_poke padtrim_a_add padtrim_b_poke"))) {
        fail(what, "cannot set the filter: %s", strerror(err));
        return;
    }
    put("trace", "");
    if ((err = put("current_tracer", "function_graph")) || (err = put("tracing_on", "1"))) {
        fail(what, "cannot start the tracer: %s", strerror(err));
        put("current_tracer", "nop");
        return;
    }
    long enabled = count_lines("enabled_functions");
    poke_modules("second poke", 6);
    put("tracing_on", "0");
    static const char *const want[] = {"padtrim_a_poke", "padtrim_a_add", "padtrim_b_poke", NULL};
    long lines = check_module_trace(what, 1, want);
    put("current_tracer", "nop");
    put("tracing_on", "1");
    if (enabled != 3)
        fail(what, "enabled_functions has %ld entries, expected 3", enabled);
    else if (lines >= 0)
        say("PADTRIM-TRACE-CHECK: PASS %s (%ld traced lines, %ld enabled functions)", what,
            lines, enabled);
}

/* Remove the modules (reverse order), tracing the NAME_bye function each exit calls. */
static void unload_modules(void)
{
    const char *what = "module-unload-function";
    char filter[MAX_MODULES * 80] = "";
    int err, traced = 0;
    for (int m = 0; m < module_count; m++) {
        size_t used = strlen(filter);
        snprintf(filter + used, sizeof filter - used, "%s%s_bye", m ? " " : "",
                 module_names[m]);
    }
    if ((err = put("set_ftrace_filter", filter))) {
        fail(what, "cannot set the filter %s: %s", filter, strerror(err));
    } else {
        put("trace", "");
        if ((err = put("current_tracer", "function")) || (err = put("tracing_on", "1")))
            fail(what, "cannot start the tracer: %s", strerror(err));
        else
            traced = 1;
    }
    long enabled = count_lines("enabled_functions");
    for (int m = module_count - 1; m >= 0; m--) {
        if (syscall(SYS_delete_module, module_names[m], O_NONBLOCK) != 0)
            fail(what, "cannot remove %s: %s", module_names[m], strerror(errno));
        else
            say("PADTRIM-MODULE: removed %s", module_names[m]);
    }
    put("tracing_on", "0");
    if (traced) {
        /* The modules are gone: their functions print as addresses now, so count lines. */
        long len = slurp(TRACING "/trace"), lines = 0, before = failures;
        char name[128];
        for (char *line = buf; len > 0 && line < buf + len;) {
            char *end = strchr(line, '\n');
            if (end)
                *end = '\0';
            int bad;
            if (traced_name(line, 0, &bad, name, sizeof name))
                lines++;
            else if (bad && failures - before < 3)
                fail(what, "unparsable trace line: %.200s", line);
            if (!end)
                break;
            line = end + 1;
        }
        if (lines != module_count)
            fail(what, "%ld calls traced during removal, expected %d", lines, module_count);
        if (enabled != module_count)
            fail(what, "enabled_functions has %ld entries, expected %d", enabled, module_count);
        if (failures == before)
            say("PADTRIM-TRACE-CHECK: PASS %s (%ld traced lines)", what, lines);
    }
    put("current_tracer", "nop");
    put("tracing_on", "1");
    struct stat st;
    if (stat("/proc/padtrim_a", &st) == 0 || stat(DEBUGFS "/padtrim_b", &st) == 0)
        fail(what, "a module's file is still there after removal");
    long len = slurp("/proc/modules");
    if (len > 0 && strstr(buf, "padtrim_"))
        fail(what, "/proc/modules still lists a module: %.200s", buf);
}

static void check_modules(void)
{
    if (read_module_order() == 0)
        return;
    say("PADTRIM-MODULE: %d module(s) to load", module_count);
    mount_fs("debugfs", DEBUGFS);
    if (load_modules() == 0) {
        check_module_tables();
        graph_modules();
        unload_modules();
    }
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* Time enabling and disabling every traceable function (no filter), best of 3. */
static void time_patching(void)
{
    long long best_on = -1, best_off = -1;
    if (put("current_tracer", "nop") || put("set_ftrace_filter", "")) {
        say("PADTRIM-FTRACE: cannot clear the filter to time patching");
        return;
    }
    for (int i = 0; i < 3; i++) {
        long long t0 = now_us();
        int err = put("current_tracer", "function");
        long long t1 = now_us();
        err = err ? err : put("current_tracer", "nop");
        long long t2 = now_us();
        if (err) {
            say("PADTRIM-FTRACE: timing current_tracer failed: %s", strerror(err));
            put("current_tracer", "nop");
            return;
        }
        if (best_on < 0 || t1 - t0 < best_on)
            best_on = t1 - t0;
        if (best_off < 0 || t2 - t1 < best_off)
            best_off = t2 - t1;
    }
    say("PADTRIM-FTRACE: enable_all_us=%lld disable_all_us=%lld", best_on, best_off);
}

int main(void)
{
    /* The kernel opens /dev/console for us when the initramfs has it (its default list
     * does); otherwise there is no stdout until devtmpfs is up. */
    mount_fs("devtmpfs", "/dev");
    if (fcntl(1, F_GETFD) < 0) {
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
    }
    say("PADTRIM-INIT: start");
    mount_fs("proc", "/proc");
    mount_fs("sysfs", "/sys");
    mount_fs("tracefs", TRACING);

    const char *selftest = getenv("padtrim_selftest");
    if (selftest && strcmp(selftest, "foreign") == 0) {
        foreign = "vfs_read";
        say("PADTRIM-INIT: self-test: also filtering %s, the checks must FAIL", foreign);
    }
    if (choose_functions() == 0) {
        show("dyn_ftrace_total_info");
        show("available_tracers");
        check_tracer("function");
        check_tracer("function_graph");
        time_patching();
    }
    check_modules();
    say("PADTRIM-INIT: done, %d failure(s)", failures);
    sync();
    reboot(RB_POWER_OFF);
    say("PADTRIM-INIT: power off failed: %s", strerror(errno));
    return 1;
}
