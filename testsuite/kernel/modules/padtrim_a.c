// SPDX-License-Identifier: GPL-2.0
/*
 * padtrim_a: a small module of padtrim's kernel check, built with the kernel's 16-byte
 * function-entry pads and then rewritten by `padtrim rewrite --slot 8`.
 *
 * Writing a number to /proc/padtrim_a calls padtrim_a_poke(), a traced function with a
 * switch, a loop and a call to the exported padtrim_a_add() (which padtrim_b calls too).
 * Writing "fault" makes a user access fault (fixed up through the module's __ex_table: the
 * write fails with EFAULT). Reading /proc/padtrim_a prints "pokes=N sum=S alt=A", A from
 * code the loader patches through the module's .alternative table (7 when it did).
 * Init and exit log a line each; exit functions are notrace in the kernel (__exit), so exit
 * calls padtrim_a_bye(), which is traced.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>
#include <asm/alternative-macros.h>
#include <asm/cpufeature.h>

long padtrim_a_add(long value);
long padtrim_a_poke(long n);
void padtrim_a_bye(void);

static long padtrim_a_sum;
static unsigned int padtrim_a_pokes;

/* Exported: padtrim_b calls it through the loader's symbol resolution. */
noinline long padtrim_a_add(long value)
{
	padtrim_a_sum += value;
	return padtrim_a_sum;
}
EXPORT_SYMBOL_GPL(padtrim_a_add);

/* A switch the compiler may turn into a jump table, and a loop: code a rewrite must keep. */
static noinline long padtrim_a_weight(long n)
{
	long w = 0;

	switch (n & 7) {
	case 0: w = 3; break;
	case 1: w = 5; break;
	case 2: w = 7; break;
	case 3: w = 11; break;
	case 4: w = 13; break;
	case 5: w = 17; break;
	case 6: w = 19; break;
	default: w = 23; break;
	}
	while (n > 7) {
		w += n & 1;
		n >>= 1;
	}
	return w;
}

/*
 * An alternative right at the function entry: the 4-byte nop it patches (into "addi", so
 * this returns x + 1) directly follows the function's pad, as in some of the kernel's own
 * functions (riscv_user_isa_enable). A rewrite must not take that nop for pad.
 */
static noinline long padtrim_a_alt_first(long x)
{
	asm volatile(ALTERNATIVE("nop", "addi %0, %0, 1", 0, %1, 1) : "+r"(x) : "i"(RISCV_ISA_EXT_m));
	return x;
}

/*
 * .alternative entries, applied by the loader: every hart has M, so the likely test's
 * "j no" becomes a nop and the unlikely test's nop becomes "j yes", a jump the loader
 * re-aims from where the assembler put it (after the section's code) to where it is copied.
 */
static noinline int padtrim_a_alternatives(void)
{
	return riscv_has_extension_likely(RISCV_ISA_EXT_m) +
	       2 * riscv_has_extension_unlikely(RISCV_ISA_EXT_m) +
	       4 * (padtrim_a_alt_first(padtrim_a_pokes) - padtrim_a_pokes);
}

/* A user access to an address nothing maps: the fault is fixed up through __ex_table. */
static noinline int padtrim_a_fault(void)
{
	char c;

	if (get_user(c, (const char __user *)64))
		return -EFAULT;
	return c;
}

noinline long padtrim_a_poke(long n)
{
	padtrim_a_pokes++;
	return padtrim_a_add(padtrim_a_weight(n));
}

static ssize_t padtrim_a_write(struct file *file, const char __user *ubuf, size_t len,
			       loff_t *pos)
{
	char text[24];
	long n;
	size_t k = min(len, sizeof(text) - 1);

	if (copy_from_user(text, ubuf, k))
		return -EFAULT;
	text[k] = '\0';
	if (strcmp(strim(text), "fault") == 0)
		return padtrim_a_fault();
	if (kstrtol(strim(text), 0, &n))
		return -EINVAL;
	padtrim_a_poke(n);
	return len;
}

static ssize_t padtrim_a_read(struct file *file, char __user *ubuf, size_t len, loff_t *pos)
{
	char text[64];
	int k = scnprintf(text, sizeof(text), "pokes=%u sum=%ld alt=%d\n", padtrim_a_pokes,
			  padtrim_a_sum, padtrim_a_alternatives());

	return simple_read_from_buffer(ubuf, len, pos, text, k);
}

static const struct proc_ops padtrim_a_ops = {
	.proc_read = padtrim_a_read,
	.proc_write = padtrim_a_write,
	.proc_lseek = default_llseek,
};

static int __init padtrim_a_init(void)
{
	if (!proc_create("padtrim_a", 0600, NULL, &padtrim_a_ops))
		return -ENOMEM;
	pr_info("padtrim_a: init, weight(5)=%ld\n", padtrim_a_weight(5));
	return 0;
}

noinline void padtrim_a_bye(void)
{
	pr_info("padtrim_a: exit after %u pokes, sum %ld\n", padtrim_a_pokes, padtrim_a_sum);
}

static void __exit padtrim_a_exit(void)
{
	remove_proc_entry("padtrim_a", NULL);
	padtrim_a_bye();
}

module_init(padtrim_a_init);
module_exit(padtrim_a_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("padtrim kernel check: a /proc trigger for traced module functions");
