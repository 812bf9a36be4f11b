// SPDX-License-Identifier: GPL-2.0
/*
 * kcrash_test: the kcrash crash lab's test module.
 *
 * 1. Plants known data at load time, so memory-analysis tests have a target whose true
 *    contents are known: a dedicated slab cache with `alloc` objects on a global list (and
 *    KCRASH_TEST_NR_FREED more that were freed again, their addresses kept in kcrash_test_freed),
 *    a global struct with known field values, an rbtree and an xarray of known keys, a vmalloc
 *    buffer with a known pattern, a per-cpu counter with known per-CPU values, a kthread sleeping
 *    in a function of known name, and kthreads whose names contain HTML metacharacters and
 *    non-UTF-8 bytes. For lock analysis: the kthread kcrash_holder holds kcrash_test_held_mutex and
 *    kcrash_test_held_rwsem (for writing) and sleeps; kcrash_wait_mutex, kcrash_wait_rwsem,
 *    kcrash_wait_sem and kcrash_wait_comp wait (killable, so the hung-task detector ignores them)
 *    on that mutex, that rwsem (for reading), kcrash_test_sem (count 0) and kcrash_test_completion.
 *    A timer_list (kcrash_test_timer -> kcrash_test_timer_fn) and an hrtimer (kcrash_test_hrtimer ->
 *    kcrash_test_hrtimer_fn) are armed 1000 s ahead. KCRASH_TEST_SEARCH is planted where `search` must find it: word 0 and
 *    word KCRASH_TEST_VMALLOC_HIT of the vmalloc buffer, and payload[1] of every tracked object.
 * 2. Crashes the kernel on demand, LKDTM-style (Debian ships no lkdtm): write a crash kind's
 *    name to /sys/kernel/debug/kcrash_test/DIRECT. The write handler goes through two noinline
 *    levels before acting, so traces have several module frames.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/list.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/debugfs.h>
#include <linux/uaccess.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/rbtree.h>
#include <linux/xarray.h>
#include <linux/percpu.h>
#include <linux/cpumask.h>
#include <linux/rwsem.h>
#include <linux/semaphore.h>
#include <linux/completion.h>
#include <linux/timer.h>
#include <linux/hrtimer.h>
#include <linux/jiffies.h>

#define KCRASH_TEST_MAGIC 0xC0FFEE01u
#define KCRASH_TEST_SEARCH 0xFEEDFACE0BADC0DEull
#define KCRASH_TEST_NR_FREED 20
#define KCRASH_TEST_NR_RB 32
#define KCRASH_TEST_VMALLOC_PAGES 4
#define KCRASH_TEST_VMALLOC_HIT 1234
#define KCRASH_TEST_VMALLOC_WORD(i) (0x6b63766d00000000ull | (u64)(i))

static int alloc = 100;
module_param(alloc, int, 0444);
MODULE_PARM_DESC(alloc, "number of tracked objects planted in the kcrash_test_cache slab cache");

/* One tracked object: the slab cache holds exactly `alloc` of them, all on kcrash_test_objects. */
struct kcrash_test_obj {
	u32 magic;
	u32 id;
	char tag[16];
	struct list_head node;
	u64 payload[4];
};

/* A global with known values of several kinds (ints, a string, pointers, bitfields). */
struct kcrash_test_planted {
	u32 magic;
	int answer;
	long negative;
	u64 big;
	char name[32];
	char raw[8];
	struct kcrash_test_planted *self;
	struct kcrash_test_obj *first;
	unsigned int flag_a : 1;
	unsigned int mode : 3;
	unsigned int level : 4;
	unsigned int spare : 24;
	int nr_objects;
};

struct kcrash_test_planted kcrash_test_global = {
	.magic = KCRASH_TEST_MAGIC,
	.answer = 42,
	.negative = -1234567,
	.big = 0x0123456789abcdefULL,
	.name = "kcrash planted global",
	.raw = { 'r', 'a', 'w', (char)0xff, (char)0xfe, '<', '>', 0 },
	.flag_a = 1,
	.mode = 5,
	.level = 9,
	.spare = 0,
};
EXPORT_SYMBOL_GPL(kcrash_test_global);

LIST_HEAD(kcrash_test_objects);

/*
 * Corrupted structures for robustness tests: a list whose third element points back to the
 * second (a walk from the head never returns to it), and a pointer to vmalloc memory that was
 * freed (its page is unmapped).
 */
LIST_HEAD(kcrash_test_cycle);
static struct kcrash_test_obj kcrash_test_cycle_objs[3];
struct kcrash_test_obj *kcrash_test_dangling;
static struct kmem_cache *kcrash_test_cache;

/* Objects of kcrash_test_cache that were allocated and freed again (ids alloc .. alloc+19). */
struct kcrash_test_obj *kcrash_test_freed[KCRASH_TEST_NR_FREED];

/* An rbtree keyed by `key`: keys 7*i for i in 0..31, inserted in a scrambled order. */
struct kcrash_test_rb {
	struct rb_node rb;
	u64 key;
	u32 magic;
};
struct rb_root kcrash_test_rbtree = RB_ROOT;

/* An xarray: entry at index i is xa_mk_value(i ^ 0x5a) for the indices of kcrash_test_xa_keys. */
DEFINE_XARRAY(kcrash_test_xarray);
static const unsigned long kcrash_test_xa_keys[] = { 0, 1, 5, 63, 64, 1000, 4096, 1 << 20 };

/* KCRASH_TEST_VMALLOC_PAGES pages; word i is KCRASH_TEST_VMALLOC_WORD(i) except the search hits. */
u64 *kcrash_test_vmalloc_buf;

/* On CPU c: 0x1000 * (c + 1) + 0x2a. */
DEFINE_PER_CPU(u64, kcrash_test_percpu_counter);
static struct dentry *kcrash_test_dir;
static struct task_struct *kcrash_test_sleeper_task;
static struct task_struct *kcrash_test_hostile_task;
static struct task_struct *kcrash_test_nonutf8_task;

static DEFINE_MUTEX(kcrash_test_mutex_a);
static DEFINE_MUTEX(kcrash_test_mutex_b);
static DEFINE_SPINLOCK(kcrash_test_lock);

/* ---- planted locks, waiters and timers ------------------------------------------------- */

DEFINE_MUTEX(kcrash_test_held_mutex);
DECLARE_RWSEM(kcrash_test_held_rwsem);
struct semaphore kcrash_test_sem;
DECLARE_COMPLETION(kcrash_test_completion);
static DECLARE_COMPLETION(kcrash_test_holder_ready);
struct timer_list kcrash_test_timer;
struct hrtimer kcrash_test_hrtimer;
static struct task_struct *kcrash_test_holder_task;
static struct task_struct *kcrash_test_waiter_tasks[4];

static noinline int kcrash_test_holder(void *unused)
{
	mutex_lock(&kcrash_test_held_mutex);
	down_write(&kcrash_test_held_rwsem);
	complete(&kcrash_test_holder_ready);
	while (!kthread_should_stop())
		schedule_timeout_interruptible(MAX_SCHEDULE_TIMEOUT);
	up_write(&kcrash_test_held_rwsem);
	mutex_unlock(&kcrash_test_held_mutex);
	return 0;
}

/* Each waiter blocks (killable) until released at unload, then idles until kthread_stop(). */
static void kcrash_test_idle_until_stopped(void)
{
	while (!kthread_should_stop())
		schedule_timeout_interruptible(MAX_SCHEDULE_TIMEOUT);
}

static noinline int kcrash_test_wait_mutex(void *unused)
{
	int ret = mutex_lock_killable(&kcrash_test_held_mutex);

	if (!ret)
		mutex_unlock(&kcrash_test_held_mutex);
	kcrash_test_idle_until_stopped();
	return ret;
}

static noinline int kcrash_test_wait_rwsem(void *unused)
{
	int ret = down_read_killable(&kcrash_test_held_rwsem);

	if (!ret)
		up_read(&kcrash_test_held_rwsem);
	kcrash_test_idle_until_stopped();
	return ret;
}

static noinline int kcrash_test_wait_sem(void *unused)
{
	int ret = down_killable(&kcrash_test_sem);

	if (!ret)
		up(&kcrash_test_sem);
	kcrash_test_idle_until_stopped();
	return ret;
}

static noinline int kcrash_test_wait_comp(void *unused)
{
	int ret = wait_for_completion_killable(&kcrash_test_completion);

	kcrash_test_idle_until_stopped();
	return ret;
}

static void kcrash_test_timer_fn(struct timer_list *timer)
{
	pr_info("kcrash_test: timer fired\n");
}

static enum hrtimer_restart kcrash_test_hrtimer_fn(struct hrtimer *timer)
{
	return HRTIMER_NORESTART;
}

static void kcrash_test_plant_waiters(void)
{
	static int (*const fns[4])(void *) = { kcrash_test_wait_mutex, kcrash_test_wait_rwsem,
					       kcrash_test_wait_sem, kcrash_test_wait_comp };
	static const char *const names[4] = { "kcrash_wait_mutex", "kcrash_wait_rwsem",
					      "kcrash_wait_sem", "kcrash_wait_comp" };
	int i;

	sema_init(&kcrash_test_sem, 0);
	kcrash_test_holder_task = kthread_run(kcrash_test_holder, NULL, "kcrash_holder");
	if (IS_ERR(kcrash_test_holder_task))
		return;
	wait_for_completion(&kcrash_test_holder_ready);
	for (i = 0; i < 4; i++)
		kcrash_test_waiter_tasks[i] = kthread_run(fns[i], NULL, "%s", names[i]);
	timer_setup(&kcrash_test_timer, kcrash_test_timer_fn, 0);
	mod_timer(&kcrash_test_timer, jiffies + 1000 * HZ);
	hrtimer_init(&kcrash_test_hrtimer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	kcrash_test_hrtimer.function = kcrash_test_hrtimer_fn;
	hrtimer_start(&kcrash_test_hrtimer, ktime_set(1000, 0), HRTIMER_MODE_REL);
}

static void kcrash_test_stop_waiters(void)
{
	int i;

	del_timer_sync(&kcrash_test_timer);
	hrtimer_cancel(&kcrash_test_hrtimer);
	if (IS_ERR_OR_NULL(kcrash_test_holder_task))
		return;
	kthread_stop(kcrash_test_holder_task);
	up(&kcrash_test_sem);
	complete_all(&kcrash_test_completion);
	for (i = 0; i < 4; i++)
		if (!IS_ERR_OR_NULL(kcrash_test_waiter_tasks[i]))
			kthread_stop(kcrash_test_waiter_tasks[i]);
}

/* ---- planted kthreads ------------------------------------------------------------------ */

static noinline void kcrash_test_sleep_deep(void)
{
	while (!kthread_should_stop())
		schedule_timeout_interruptible(MAX_SCHEDULE_TIMEOUT);
}

static noinline int kcrash_test_sleeper(void *unused)
{
	kcrash_test_sleep_deep();
	return 0;
}

/* ---- crash kinds ----------------------------------------------------------------------- */

static noinline void kcrash_test_do_bug(void)
{
	BUG();
}

static noinline void kcrash_test_do_null_read(void)
{
	volatile int *p = (volatile int *)0x10;

	pr_info("kcrash_test: read %d\n", *p);
}

static noinline void kcrash_test_do_null_write(void)
{
	volatile int *p = NULL;

	*p = 0x1234;
}

static noinline void kcrash_test_do_warning(void)
{
	WARN(1, "kcrash_test: WARNING requested");
}

static noinline void kcrash_test_do_panic(void)
{
	panic("kcrash_test: PANIC requested");
}

static noinline void kcrash_test_do_divzero(void)
{
	volatile int zero = 0;
	volatile int one = 1;

	pr_info("kcrash_test: %d\n", one / zero);
}

static noinline int kcrash_test_recurse(int depth)
{
	volatile char frame[512];

	memset((char *)frame, depth & 0xff, sizeof(frame));
	return kcrash_test_recurse(depth + 1) + frame[depth % sizeof(frame)];
}

static noinline void kcrash_test_do_stack_overflow(void)
{
	pr_info("kcrash_test: %d\n", kcrash_test_recurse(0));
}

static noinline void kcrash_test_do_softlockup(void)
{
	preempt_disable();
	for (;;)
		cpu_relax();
}

static noinline void kcrash_test_do_spinlockup(void)
{
	spin_lock(&kcrash_test_lock);
	spin_lock(&kcrash_test_lock);	/* spins forever; the unlocks keep it from being a tail call */
	spin_unlock(&kcrash_test_lock);
	spin_unlock(&kcrash_test_lock);
}

static noinline void kcrash_test_abba_lock(struct mutex *first, struct mutex *second)
{
	mutex_lock(first);
	msleep(200);
	mutex_lock(second);	/* never returns: the other thread holds it */
	mutex_unlock(second);
	mutex_unlock(first);
}

static noinline int kcrash_test_abba_thread_a(void *unused)
{
	kcrash_test_abba_lock(&kcrash_test_mutex_a, &kcrash_test_mutex_b);
	return 0;
}

static noinline int kcrash_test_abba_thread_b(void *unused)
{
	kcrash_test_abba_lock(&kcrash_test_mutex_b, &kcrash_test_mutex_a);
	return 0;
}

static noinline void kcrash_test_do_hung_abba(void)
{
	kthread_run(kcrash_test_abba_thread_a, NULL, "kcrash_abba_a");
	kthread_run(kcrash_test_abba_thread_b, NULL, "kcrash_abba_b");
}

struct kcrash_test_kind {
	const char *name;
	void (*fn)(void);
};

static const struct kcrash_test_kind kcrash_test_kinds[] = {
	{ "BUG", kcrash_test_do_bug },
	{ "NULL_READ", kcrash_test_do_null_read },
	{ "NULL_WRITE", kcrash_test_do_null_write },
	{ "WARNING", kcrash_test_do_warning },
	{ "PANIC", kcrash_test_do_panic },
	{ "DIVZERO", kcrash_test_do_divzero },
	{ "STACK_OVERFLOW", kcrash_test_do_stack_overflow },
	{ "SOFTLOCKUP", kcrash_test_do_softlockup },
	{ "SPINLOCKUP", kcrash_test_do_spinlockup },
	{ "HUNG_ABBA", kcrash_test_do_hung_abba },
};

static noinline int kcrash_test_level2(const char *kind)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(kcrash_test_kinds); i++) {
		if (strcmp(kind, kcrash_test_kinds[i].name) == 0) {
			pr_info("kcrash_test: triggering %s\n", kind);
			kcrash_test_kinds[i].fn();
			return 0;
		}
	}
	return -EINVAL;
}

static noinline int kcrash_test_level1(const char *kind)
{
	int ret = kcrash_test_level2(kind);

	barrier();
	return ret;
}

static ssize_t kcrash_test_direct_write(struct file *file, const char __user *ubuf,
					size_t count, loff_t *ppos)
{
	char kind[32];
	ssize_t len;
	int ret;

	len = simple_write_to_buffer(kind, sizeof(kind) - 1, ppos, ubuf, count);
	if (len < 0)
		return len;
	kind[len] = '\0';
	strim(kind);
	ret = kcrash_test_level1(strim(kind));
	return ret ? ret : count;
}

static const struct file_operations kcrash_test_direct_fops = {
	.owner = THIS_MODULE,
	.write = kcrash_test_direct_write,
	.llseek = noop_llseek,
};

/* ---- load / unload --------------------------------------------------------------------- */

static void kcrash_test_obj_ctor(void *obj)
{
	memset(obj, 0, sizeof(struct kcrash_test_obj));
}

static int kcrash_test_plant_objects(void)
{
	struct kcrash_test_obj *obj;
	int i;

	/* the constructor keeps the cache from being merged into another one of the same size */
	kcrash_test_cache = kmem_cache_create("kcrash_test_cache", sizeof(struct kcrash_test_obj),
					      0, 0, kcrash_test_obj_ctor);
	if (!kcrash_test_cache)
		return -ENOMEM;
	for (i = 0; i < alloc; i++) {
		obj = kmem_cache_alloc(kcrash_test_cache, GFP_KERNEL);
		if (!obj)
			return -ENOMEM;
		memset(obj, 0, sizeof(*obj));
		obj->magic = KCRASH_TEST_MAGIC;
		obj->id = i;
		snprintf(obj->tag, sizeof(obj->tag), "obj-%d", i);
		obj->payload[0] = (u64)i * 3;
		obj->payload[1] = KCRASH_TEST_SEARCH;
		list_add_tail(&obj->node, &kcrash_test_objects);
		kcrash_test_global.nr_objects++;
	}
	kcrash_test_global.first = list_first_entry_or_null(&kcrash_test_objects,
							     struct kcrash_test_obj, node);
	return 0;
}

static int kcrash_test_plant_freed(void)
{
	struct kcrash_test_obj *obj;
	int i;

	for (i = 0; i < KCRASH_TEST_NR_FREED; i++) {
		obj = kmem_cache_alloc(kcrash_test_cache, GFP_KERNEL);
		if (!obj)
			return -ENOMEM;
		memset(obj, 0, sizeof(*obj));
		obj->magic = KCRASH_TEST_MAGIC;
		obj->id = alloc + i;
		kcrash_test_freed[i] = obj;
	}
	for (i = 0; i < KCRASH_TEST_NR_FREED; i++)
		kmem_cache_free(kcrash_test_cache, kcrash_test_freed[i]);
	return 0;
}

static void kcrash_test_rb_insert(struct kcrash_test_rb *new)
{
	struct rb_node **link = &kcrash_test_rbtree.rb_node, *parent = NULL;

	while (*link) {
		parent = *link;
		if (new->key < rb_entry(parent, struct kcrash_test_rb, rb)->key)
			link = &parent->rb_left;
		else
			link = &parent->rb_right;
	}
	rb_link_node(&new->rb, parent, link);
	rb_insert_color(&new->rb, &kcrash_test_rbtree);
}

static int kcrash_test_plant_trees(void)
{
	struct kcrash_test_rb *node;
	size_t i;

	for (i = 0; i < KCRASH_TEST_NR_RB; i++) {
		node = kzalloc(sizeof(*node), GFP_KERNEL);
		if (!node)
			return -ENOMEM;
		node->key = 7 * ((i * 13) % KCRASH_TEST_NR_RB);
		node->magic = KCRASH_TEST_MAGIC;
		kcrash_test_rb_insert(node);
	}
	for (i = 0; i < ARRAY_SIZE(kcrash_test_xa_keys); i++)
		if (xa_err(xa_store(&kcrash_test_xarray, kcrash_test_xa_keys[i],
				    xa_mk_value(kcrash_test_xa_keys[i] ^ 0x5a), GFP_KERNEL)))
			return -ENOMEM;
	return 0;
}

static int kcrash_test_plant_memory(void)
{
	size_t i, words = KCRASH_TEST_VMALLOC_PAGES * PAGE_SIZE / sizeof(u64);
	int cpu;

	kcrash_test_vmalloc_buf = vmalloc(KCRASH_TEST_VMALLOC_PAGES * PAGE_SIZE);
	if (!kcrash_test_vmalloc_buf)
		return -ENOMEM;
	for (i = 0; i < words; i++)
		kcrash_test_vmalloc_buf[i] = KCRASH_TEST_VMALLOC_WORD(i);
	kcrash_test_vmalloc_buf[0] = KCRASH_TEST_SEARCH;
	kcrash_test_vmalloc_buf[KCRASH_TEST_VMALLOC_HIT] = KCRASH_TEST_SEARCH;
	for_each_possible_cpu(cpu)
		per_cpu(kcrash_test_percpu_counter, cpu) = 0x1000 * (cpu + 1) + 0x2a;
	return 0;
}

static void kcrash_test_free_trees(void)
{
	struct kcrash_test_rb *node, *tmp;

	rbtree_postorder_for_each_entry_safe(node, tmp, &kcrash_test_rbtree, rb)
		kfree(node);
	kcrash_test_rbtree = RB_ROOT;
	xa_destroy(&kcrash_test_xarray);
	vfree(kcrash_test_vmalloc_buf);
}

static void kcrash_test_plant_corruption(void)
{
	int i;

	for (i = 0; i < 3; i++) {
		kcrash_test_cycle_objs[i].magic = KCRASH_TEST_MAGIC;
		kcrash_test_cycle_objs[i].id = 1000 + i;
		list_add_tail(&kcrash_test_cycle_objs[i].node, &kcrash_test_cycle);
	}
	kcrash_test_cycle_objs[2].node.next = &kcrash_test_cycle_objs[1].node;
	kcrash_test_dangling = vzalloc(PAGE_SIZE);
	vfree(kcrash_test_dangling);
}

static void kcrash_test_free_objects(void)
{
	struct kcrash_test_obj *obj, *tmp;

	list_for_each_entry_safe(obj, tmp, &kcrash_test_objects, node) {
		list_del(&obj->node);
		kmem_cache_free(kcrash_test_cache, obj);
	}
	kmem_cache_destroy(kcrash_test_cache);
}

static void kcrash_test_stop_threads(void)
{
	if (!IS_ERR_OR_NULL(kcrash_test_sleeper_task))
		kthread_stop(kcrash_test_sleeper_task);
	if (!IS_ERR_OR_NULL(kcrash_test_hostile_task))
		kthread_stop(kcrash_test_hostile_task);
	if (!IS_ERR_OR_NULL(kcrash_test_nonutf8_task))
		kthread_stop(kcrash_test_nonutf8_task);
}

static int __init kcrash_test_init(void)
{
	int ret;

	kcrash_test_global.self = &kcrash_test_global;
	kcrash_test_plant_corruption();
	ret = kcrash_test_plant_objects();
	if (!ret)
		ret = kcrash_test_plant_freed();
	if (!ret)
		ret = kcrash_test_plant_trees();
	if (!ret)
		ret = kcrash_test_plant_memory();
	if (ret) {
		kcrash_test_free_trees();
		kcrash_test_free_objects();
		return ret;
	}
	kcrash_test_plant_waiters();
	kcrash_test_sleeper_task = kthread_run(kcrash_test_sleeper, NULL, "kcrash_sleeper");
	kcrash_test_hostile_task = kthread_run(kcrash_test_sleeper, NULL, "%s", "<i>x</i>&\"'");
	kcrash_test_nonutf8_task = kthread_run(kcrash_test_sleeper, NULL, "%s", "nu\xff\xfe\x01<b>");
	kcrash_test_dir = debugfs_create_dir("kcrash_test", NULL);
	debugfs_create_file("DIRECT", 0200, kcrash_test_dir, NULL, &kcrash_test_direct_fops);
	pr_info("kcrash_test: planted %d objects at %px, global at %px\n",
		kcrash_test_global.nr_objects, &kcrash_test_objects, &kcrash_test_global);
	return 0;
}

static void __exit kcrash_test_exit(void)
{
	INIT_LIST_HEAD(&kcrash_test_cycle);
	debugfs_remove_recursive(kcrash_test_dir);
	kcrash_test_stop_threads();
	kcrash_test_stop_waiters();
	kcrash_test_free_trees();
	kcrash_test_free_objects();
}

module_init(kcrash_test_init);
module_exit(kcrash_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kcrash crash lab: planted data and on-demand crashes");
