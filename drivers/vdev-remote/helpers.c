// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for what Rust cannot call directly: page_address() and
 * irqs_disabled() are macros or static inlines depending on the
 * configuration.
 */
#include <linux/irqflags.h>
#include <linux/mm.h>
#include <linux/virtio_ring.h>
#include "virtio.h"

void *vdev_remote_page_address(struct page *page)
{
	return page_address(page);
}

bool vdev_remote_irqs_disabled(void)
{
	return irqs_disabled();
}

/*
 * Runs a virtqueue's callback as a device interrupt would: with local
 * interrupts off, also when called from the fail work in process context.
 */
void vdev_remote_vring_interrupt(struct virtqueue *vq)
{
	unsigned long flags;

	local_irq_save(flags);
	vring_interrupt(0, vq);
	local_irq_restore(flags);
}
