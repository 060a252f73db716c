/* A QEMU TCG plugin (plugin API version 1, QEMU 7.x/8.x) that counts guest instructions:
   each translated block adds its instruction count to one counter every time it runs
   (inline, so the count is exact and deterministic for a single-threaded guest). The total
   is written to the file given as out=PATH when the guest exits.
   Only the few API entry points used are declared here, as QEMU exports them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t plugin_id;
struct qemu_plugin_tb;
struct qemu_info_t;

void qemu_plugin_register_vcpu_tb_trans_cb(plugin_id id,
                                           void (*cb)(plugin_id, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, int op, void *ptr,
                                              uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(plugin_id id, void (*cb)(plugin_id, void *), void *data);

#define INLINE_ADD_U64 0
#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;

static uint64_t executed;
static const char *out_path;

static void on_translate(plugin_id id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit_cb(plugin_id id, void *data) {
    (void)id;
    (void)data;
    FILE *f = out_path ? fopen(out_path, "w") : stderr;
    if (f) {
        fprintf(f, "%llu\n", (unsigned long long)executed);
        if (f != stderr)
            fclose(f);
    }
}

EXPORT int qemu_plugin_install(plugin_id id, const struct qemu_info_t *info, int argc,
                               char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0)
            out_path = argv[i] + 4;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
