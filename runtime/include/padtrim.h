/* padtrim runtime: the C API for programs that want control over tracing.
 *
 * Link the program with the runtime (`scripts/runtime-lib` prints the library), build it with
 * -fpatchable-function-entry and rewrite it with `padtrim rewrite --slot 4`. Settings come
 * from the environment at startup: PADTRIM_TRACE=off|entry|graph, PADTRIM_FILTER,
 * PADTRIM_ARGS (arguments and return values to record, see README.md), PADTRIM_OUT,
 * PADTRIM_DEBUG=1 (one line on stderr: where the slot table was found, how many
 * slots were patched).
 *
 * The functions below are safe to call whatever PADTRIM_TRACE says; with tracing off nothing
 * is recorded, but registered handlers still run. */
#ifndef PADTRIM_H
#define PADTRIM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Start (on != 0) or stop recording. Patched slots stay patched, so a stopped trace still
 * costs the trampoline call; exits of calls entered while recording are still recorded. */
void padtrim_set_enabled(int on);

/* Patch (on != 0) or restore the slot of the function whose entry is `func`.
 * Returns 0 on success, -1 if `func` is not the entry of a slot (or the slot cannot change). */
int padtrim_enable_function(const void *func, int on);

/* Call handler(func, caller) on every entry of `func` (patching its slot if needed), after
 * recording the entry; `caller` is the traced function's return address. A null handler removes it.
 * Returns 0, or -1 if `func` has no slot or 64 functions already have handlers. The handler
 * runs with the traced function's arguments saved; it must not call `func` itself. */
typedef void (*padtrim_handler)(const void *func, const void *caller);
int padtrim_register_handler(const void *func, padtrim_handler handler);

#ifdef __cplusplus
}
#endif

#endif
