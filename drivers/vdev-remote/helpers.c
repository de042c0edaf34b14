// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for what Rust cannot call directly: irqs_disabled(),
 * local_irq_save() and local_bh_disable() are macros or static inlines
 * whose meaning depends on the configuration (PREEMPT_RT among them), and
 * the kernel crate has no binding that keeps that meaning: its
 * local_interrupt_disable() turns interrupts off on PREEMPT_RT too, which
 * is exactly what vdev_remote_vring_interrupt() must not do there.
 */
#include <linux/bottom_half.h>
#include <linux/irqflags.h>
#include <linux/virtio_ring.h>
#include "virtio.h"

/*
 * Whether the caller of a kick may spin for its buffers to come back
 * (virtio_console's __send_to_port does, holding its port's locks) so the
 * transport must collect them itself rather than leave it to the interrupt.
 * Without PREEMPT_RT that caller has interrupts off. With PREEMPT_RT its
 * spinlock_t does not turn them off and nothing tells its context apart,
 * while the interrupt thread that would collect the used entries can block
 * on the very lock the spinner holds (hvc_poll takes the hvc lock that
 * hvc_write holds around put_chars), so every kick of a driver that spins
 * (spinning_driver: virtio_console) counts as such a caller. Other drivers
 * (virtio_net's transmit, virtio_blk) never spin on their buffers: making
 * each of their kicks wait for the backend cost a backend round trip per
 * packet.
 */
bool vdev_remote_kick_may_spin(bool spinning_driver)
{
	return (IS_ENABLED(CONFIG_PREEMPT_RT) && spinning_driver) || irqs_disabled();
}

/*
 * Runs a virtqueue's callback in the context a device interrupt handler
 * runs in, also when called from the fail work in process context:
 *
 * - without PREEMPT_RT, hard interrupt context: local interrupts off;
 * - with PREEMPT_RT, a force-threaded handler (irq_forced_thread_fn):
 *   preemptible, bottom halves off, interrupts on. spinlock_t sleeps there,
 *   so turning interrupts off would make every virtio driver callback that
 *   takes its queue lock (virtblk_done, ...) sleep in atomic context.
 */
void vdev_remote_vring_interrupt(struct virtqueue *vq)
{
	unsigned long flags;

	if (IS_ENABLED(CONFIG_PREEMPT_RT)) {
		local_bh_disable();
		vring_interrupt(0, vq);
		local_bh_enable();
		return;
	}
	local_irq_save(flags);
	vring_interrupt(0, vq);
	local_irq_restore(flags);
}
