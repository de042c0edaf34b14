/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cpu_isolate C shim: accessors the Rust side cannot reach (static inlines,
 * macros, a kobject with attributes). No policy lives here; see shim.rs for
 * the Rust declarations, which must match this file.
 */
#ifndef CPU_ISOLATE_SHIM_H
#define CPU_ISOLATE_SHIM_H

#include <linux/types.h>

struct cpumask;
struct kobject;
struct task_struct;

/* Attribute ids passed to the Rust show/store callbacks. */
enum cpu_isolate_attr {
	CPU_ISOLATE_ATTR_ISOLATE,
	CPU_ISOLATE_ATTR_RELEASE,
	CPU_ISOLATE_ATTR_STATUS,
	CPU_ISOLATE_ATTR_IRQS,
	CPU_ISOLATE_ATTR_KTHREADS,
	CPU_ISOLATE_ATTR_LAST_ERROR,
	CPU_ISOLATE_ATTR_SAMPLER_CPUS,
	CPU_ISOLATE_ATTR_SAMPLER_DURATION_MS,
	CPU_ISOLATE_ATTR_SAMPLER_THRESHOLD_NS,
	CPU_ISOLATE_ATTR_SAMPLER_CONTROL,
	CPU_ISOLATE_ATTR_SAMPLER_RESULTS,
};

struct cpu_isolate_sysfs_ops {
	ssize_t (*show)(void *ctx, unsigned int id, char *buf);
	ssize_t (*store)(void *ctx, unsigned int id, const char *buf, size_t len);
};

struct kobject *cpu_isolate_sysfs_create(const struct cpu_isolate_sysfs_ops *ops, void *ctx);
void cpu_isolate_sysfs_destroy(struct kobject *kobj);

void cpu_isolate_topology(struct cpumask *present, struct cpumask *online,
			  struct cpumask *hotpluggable, struct cpumask *housekeeping);

#define CPU_ISOLATE_IRQ_CAN_SET		(1U << 0)
#define CPU_ISOLATE_IRQ_MANAGED		(1U << 1)
#define CPU_ISOLATE_IRQ_PER_CPU		(1U << 2)
#define CPU_ISOLATE_IRQ_REQUESTED	(1U << 3)
#define CPU_ISOLATE_IRQ_PENDING		(1U << 4)

int cpu_isolate_irq_query(unsigned int irq, struct cpumask *affinity,
			  struct cpumask *effective, unsigned int *flags);

unsigned int cpu_isolate_kthreads_get(struct task_struct **tasks, unsigned int max);
void cpu_isolate_task_affinity(struct task_struct *t, struct cpumask *out);
unsigned int cpu_isolate_task_flags(struct task_struct *t);
void cpu_isolate_task_comm(struct task_struct *t, char *buf, size_t len);

u64 cpu_isolate_cpu_irqs(unsigned int cpu);
u64 cpu_isolate_cpu_softirqs(unsigned int cpu);
u64 cpu_isolate_cpu_irqtime(unsigned int cpu);
u64 cpu_isolate_current_runtime(void);
void cpu_isolate_cond_resched(void);

int cpu_isolate_hotplug_watch(void);
void cpu_isolate_hotplug_unwatch(void);
void cpu_isolate_went_offline(struct cpumask *out);
void cpu_isolate_forget_offline(const struct cpumask *seen);

#endif
