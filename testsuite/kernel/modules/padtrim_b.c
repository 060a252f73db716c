// SPDX-License-Identifier: GPL-2.0
/*
 * padtrim_b: the second module of padtrim's kernel check. It needs padtrim_a (it calls
 * padtrim_a_add(), which padtrim_a exports), so the loader resolves a symbol of another
 * rewritten module.
 *
 * Writing a number to /sys/kernel/debug/padtrim_b/poke calls padtrim_b_poke(), a traced
 * function; reading it back prints the last result. Exit calls padtrim_b_bye() (traced; the
 * exit function itself is notrace, as every __exit function is).
 */
#include <linux/debugfs.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>

long padtrim_a_add(long value);
long padtrim_b_poke(long n);
void padtrim_b_bye(void);

static struct dentry *padtrim_b_dir;
static u64 padtrim_b_last;

noinline long padtrim_b_poke(long n)
{
	long r = padtrim_a_add(2 * n + 1);

	padtrim_b_last = r;
	return r;
}

static int padtrim_b_set(void *data, u64 value)
{
	padtrim_b_poke((long)value);
	return 0;
}

static int padtrim_b_get(void *data, u64 *value)
{
	*value = padtrim_b_last;
	return 0;
}

DEFINE_DEBUGFS_ATTRIBUTE(padtrim_b_fops, padtrim_b_get, padtrim_b_set, "%llu\n");

static int __init padtrim_b_init(void)
{
	padtrim_b_dir = debugfs_create_dir("padtrim_b", NULL);
	debugfs_create_file_unsafe("poke", 0600, padtrim_b_dir, NULL, &padtrim_b_fops);
	pr_info("padtrim_b: init\n");
	return 0;
}

noinline void padtrim_b_bye(void)
{
	pr_info("padtrim_b: exit, last %llu\n", padtrim_b_last);
}

static void __exit padtrim_b_exit(void)
{
	debugfs_remove(padtrim_b_dir);
	padtrim_b_bye();
}

module_init(padtrim_b_init);
module_exit(padtrim_b_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("padtrim kernel check: a debugfs trigger calling into padtrim_a");
