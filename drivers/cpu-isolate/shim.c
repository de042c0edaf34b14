// SPDX-License-Identifier: GPL-2.0
/*
 * cpu_isolate C shim.
 *
 * Thin accessors for what Rust cannot call directly: sysfs attributes need a
 * kobject and static attribute tables; irq_desc and task_struct fields are
 * read through static inline helpers under the locks the kernel uses for
 * them; the per-CPU interrupt counters are per-CPU variables. Every decision
 * is taken on the Rust side.
 */

#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/cpumask.h>
#include <linux/irq.h>
#include <linux/irqdesc.h>
#include <linux/kernel_stat.h>
#include <linux/kobject.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/isolation.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <asm/hardirq.h>

#include "shim.h"

/* ---- sysfs ---------------------------------------------------------- */

/*
 * One module instance, one directory: the callbacks and their context are
 * set before the directory appears and cleared after it is gone (kobject
 * removal waits for running show/store calls to return).
 */
static const struct cpu_isolate_sysfs_ops *sysfs_ops;
static void *sysfs_ctx;

struct cpu_isolate_attribute {
	struct kobj_attribute kattr;
	unsigned int id;
};

static ssize_t attr_show(struct kobject *kobj, struct kobj_attribute *kattr, char *buf)
{
	struct cpu_isolate_attribute *a = container_of(kattr, struct cpu_isolate_attribute, kattr);

	return sysfs_ops->show(sysfs_ctx, a->id, buf);
}

static ssize_t attr_store(struct kobject *kobj, struct kobj_attribute *kattr,
			  const char *buf, size_t len)
{
	struct cpu_isolate_attribute *a = container_of(kattr, struct cpu_isolate_attribute, kattr);

	return sysfs_ops->store(sysfs_ctx, a->id, buf, len);
}

#define CI_ATTR(_var, _name, _mode, _id)					\
	static struct cpu_isolate_attribute _var = {				\
		.kattr = __ATTR(_name, _mode, attr_show, attr_store),		\
		.id = _id,							\
	}

CI_ATTR(attr_isolate, isolate, 0644, CPU_ISOLATE_ATTR_ISOLATE);
CI_ATTR(attr_release, release, 0200, CPU_ISOLATE_ATTR_RELEASE);
CI_ATTR(attr_status, status, 0444, CPU_ISOLATE_ATTR_STATUS);
CI_ATTR(attr_irqs, irqs, 0444, CPU_ISOLATE_ATTR_IRQS);
CI_ATTR(attr_kthreads, kthreads, 0444, CPU_ISOLATE_ATTR_KTHREADS);
CI_ATTR(attr_last_error, last_error, 0444, CPU_ISOLATE_ATTR_LAST_ERROR);
CI_ATTR(attr_s_cpus, cpus, 0644, CPU_ISOLATE_ATTR_SAMPLER_CPUS);
CI_ATTR(attr_s_duration, duration_ms, 0644, CPU_ISOLATE_ATTR_SAMPLER_DURATION_MS);
CI_ATTR(attr_s_threshold, threshold_ns, 0644, CPU_ISOLATE_ATTR_SAMPLER_THRESHOLD_NS);
CI_ATTR(attr_s_control, control, 0644, CPU_ISOLATE_ATTR_SAMPLER_CONTROL);
CI_ATTR(attr_s_results, results, 0444, CPU_ISOLATE_ATTR_SAMPLER_RESULTS);

static struct attribute *main_attrs[] = {
	&attr_isolate.kattr.attr,
	&attr_release.kattr.attr,
	&attr_status.kattr.attr,
	&attr_irqs.kattr.attr,
	&attr_kthreads.kattr.attr,
	&attr_last_error.kattr.attr,
	NULL,
};

static struct attribute *sampler_attrs[] = {
	&attr_s_cpus.kattr.attr,
	&attr_s_duration.kattr.attr,
	&attr_s_threshold.kattr.attr,
	&attr_s_control.kattr.attr,
	&attr_s_results.kattr.attr,
	NULL,
};

static const struct attribute_group main_group = { .attrs = main_attrs };
static const struct attribute_group sampler_group = { .name = "sampler", .attrs = sampler_attrs };
static const struct attribute_group *groups[] = { &main_group, &sampler_group, NULL };

struct kobject *cpu_isolate_sysfs_create(const struct cpu_isolate_sysfs_ops *ops, void *ctx)
{
	struct kobject *kobj;
	int ret;

	sysfs_ops = ops;
	sysfs_ctx = ctx;
	kobj = kobject_create_and_add("cpu_isolate", kernel_kobj);
	if (!kobj)
		return ERR_PTR(-ENOMEM);
	ret = sysfs_create_groups(kobj, groups);
	if (ret) {
		kobject_put(kobj);
		return ERR_PTR(ret);
	}
	return kobj;
}

void cpu_isolate_sysfs_destroy(struct kobject *kobj)
{
	sysfs_remove_groups(kobj, groups);
	kobject_put(kobj);
	sysfs_ops = NULL;
	sysfs_ctx = NULL;
}

/* ---- topology ------------------------------------------------------- */

void cpu_isolate_topology(struct cpumask *present, struct cpumask *online,
			  struct cpumask *hotpluggable, struct cpumask *housekeeping)
{
	unsigned int cpu;

	/* One consistent view: no CPU comes or goes while it is copied. */
	cpus_read_lock();
	cpumask_copy(present, cpu_present_mask);
	cpumask_copy(online, cpu_online_mask);
	cpumask_clear(hotpluggable);
	for_each_present_cpu(cpu)
		if (cpu_is_hotpluggable(cpu))
			cpumask_set_cpu(cpu, hotpluggable);
	/*
	 * Domain housekeeping: boot-time isolcpus= and cpuset isolated
	 * partitions excluded. Partitions replace the mask under RCU, so
	 * reading it needs an RCU read-side section (or the cpuset lock).
	 */
	rcu_read_lock();
	cpumask_copy(housekeeping, housekeeping_cpumask(HK_TYPE_DOMAIN));
	rcu_read_unlock();
	cpus_read_unlock();
}

/* ---- interrupts ----------------------------------------------------- */

int cpu_isolate_irq_query(unsigned int irq, struct cpumask *affinity,
			  struct cpumask *effective, unsigned int *flags)
{
	struct irq_desc *desc;
	struct irq_data *d;
	unsigned long irqflags;
	unsigned int f = 0;

	/*
	 * Descriptors are freed after an RCU grace period. irq_to_desc() is
	 * not exported (only for Book3S KVM); irq_get_irq_data() is, and
	 * returns the descriptor's embedded irq_data.
	 */
	rcu_read_lock();
	d = irq_get_irq_data(irq);
	if (!d) {
		rcu_read_unlock();
		return -ENOENT;
	}
	desc = irq_data_to_desc(d);
	raw_spin_lock_irqsave(&desc->lock, irqflags);
	if (irqd_affinity_is_managed(d))
		f |= CPU_ISOLATE_IRQ_MANAGED;
	if (irqd_is_per_cpu(d))
		f |= CPU_ISOLATE_IRQ_PER_CPU;
	if (desc->action)
		f |= CPU_ISOLATE_IRQ_REQUESTED;
	/*
	 * What /proc/irq/N/smp_affinity shows: a move that waits for the
	 * next interrupt (IRQCHIP_MOVE_DEFERRED chips) is already the
	 * affinity the user asked for.
	 */
#ifdef CONFIG_GENERIC_PENDING_IRQ
	if (irqd_is_setaffinity_pending(d)) {
		f |= CPU_ISOLATE_IRQ_PENDING;
		cpumask_copy(affinity, desc->pending_mask);
	} else
#endif
		cpumask_copy(affinity, irq_data_get_affinity_mask(d));
	cpumask_copy(effective, irq_data_get_effective_affinity_mask(d));
	raw_spin_unlock_irqrestore(&desc->lock, irqflags);
	rcu_read_unlock();

	/* Takes the descriptor lock itself. */
	if (irq_can_set_affinity(irq))
		f |= CPU_ISOLATE_IRQ_CAN_SET;
	*flags = f;
	return 0;
}

/* ---- kernel threads ------------------------------------------------- */

unsigned int cpu_isolate_kthreads_get(struct task_struct **tasks, unsigned int max)
{
	struct task_struct *p;
	unsigned int n = 0;

	rcu_read_lock();
	for_each_process(p) {
		if (!(p->flags & PF_KTHREAD))
			continue;
		if (n < max) {
			get_task_struct(p);
			tasks[n] = p;
		}
		n++;
	}
	rcu_read_unlock();
	return n;
}

void cpu_isolate_task_affinity(struct task_struct *t, struct cpumask *out)
{
	unsigned long flags;

	/* set_cpus_allowed_ptr() updates the mask under pi_lock. */
	raw_spin_lock_irqsave(&t->pi_lock, flags);
	cpumask_copy(out, t->cpus_ptr);
	raw_spin_unlock_irqrestore(&t->pi_lock, flags);
}

unsigned int cpu_isolate_task_flags(struct task_struct *t)
{
	return READ_ONCE(t->flags);
}

void cpu_isolate_task_comm(struct task_struct *t, char *buf, size_t len)
{
	strscpy(buf, t->comm, len);
}

/* ---- per-CPU interrupt counters ------------------------------------- */

u64 cpu_isolate_cpu_irqs(unsigned int cpu)
{
	u64 sum = kstat_cpu_irqs_sum(cpu);
#ifdef CONFIG_X86
	/*
	 * Local APIC timer, IPIs and other system vectors are counted per
	 * CPU in irq_stat, not in the descriptors' counters.
	 */
	const irq_cpustat_t *st = per_cpu_ptr(&irq_stat, cpu);
	unsigned int i;

	for (i = 0; i < IRQ_COUNT_MAX; i++)
		sum += READ_ONCE(st->counts[i]);
#endif
	return sum;
}

u64 cpu_isolate_cpu_softirqs(unsigned int cpu)
{
	return kstat_cpu_softirqs_sum(cpu);
}

/*
 * Time @cpu spent in hard and soft interrupt handlers so far, in ns. Exact
 * with CONFIG_IRQ_TIME_ACCOUNTING (updated at every handler exit); with
 * tick-based accounting it is sampled at ticks.
 */
u64 cpu_isolate_cpu_irqtime(unsigned int cpu)
{
	const u64 *cpustat = kcpustat_cpu(cpu).cpustat;

	return READ_ONCE(cpustat[CPUTIME_IRQ]) + READ_ONCE(cpustat[CPUTIME_SOFTIRQ]);
}

/*
 * The calling thread's CPU time so far, in ns (interrupt time excluded with
 * CONFIG_IRQ_TIME_ACCOUNTING). task_sched_runtime() is not exported; the
 * field is updated at ticks and context switches, so it can lag one tick.
 */
u64 cpu_isolate_current_runtime(void)
{
	return READ_ONCE(current->se.sum_exec_runtime);
}

/*
 * cond_resched() is a macro, and a no-op on preemptible kernels (where the
 * sampler is preempted anyway); on the others it lets the scheduler run
 * what is due (the soft-lockup watchdog's stopper thread) and reports an
 * RCU quiescent state, so a long sampler run causes no lockup or stall
 * reports.
 */
void cpu_isolate_cond_resched(void)
{
	cond_resched();
}

/*
 * CPUs that went offline since the module last looked (the steering code
 * clears what it has seen). When every CPU an interrupt or a kernel thread
 * may use goes offline, the kernel replaces its affinity ("breaks" it:
 * migrate_one_irq(), select_fallback_rq()); the steering code must not
 * take that for an administrator's choice. The teardown callback runs in
 * the hotplug thread of the outgoing CPU, before the interrupts and tasks
 * are migrated off it; it only sets a bit (atomically) and takes no lock,
 * so remove_cpu() under the module's mutex cannot deadlock on it.
 */
static struct cpumask cpu_isolate_offlined;
static int cpu_isolate_hp_state = -1;

static int cpu_isolate_cpu_down(unsigned int cpu)
{
	cpumask_set_cpu(cpu, &cpu_isolate_offlined);
	/* The bit is visible before the affinities are broken. */
	smp_mb__after_atomic();
	return 0;
}

int cpu_isolate_hotplug_watch(void)
{
	int ret = cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "cpu_isolate:offline",
					    NULL, cpu_isolate_cpu_down);

	if (ret < 0)
		return ret;
	cpu_isolate_hp_state = ret;
	return 0;
}

void cpu_isolate_hotplug_unwatch(void)
{
	if (cpu_isolate_hp_state >= 0)
		cpuhp_remove_state_nocalls(cpu_isolate_hp_state);
	cpu_isolate_hp_state = -1;
}

void cpu_isolate_went_offline(struct cpumask *out)
{
	unsigned int cpu;

	/* Pairs with the barrier in cpu_isolate_cpu_down(). */
	smp_mb();
	cpumask_clear(out);
	for_each_cpu(cpu, &cpu_isolate_offlined)
		cpumask_set_cpu(cpu, out);
}

void cpu_isolate_forget_offline(const struct cpumask *seen)
{
	unsigned int cpu;

	for_each_cpu(cpu, seen)
		cpumask_clear_cpu(cpu, &cpu_isolate_offlined);
}
