/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What vdev_remote needs from the kernel's C virtio API, for bindgen: the
 * transport types (virtio_device, virtio_config_ops, virtio_map_ops), the
 * virtqueue calls, and the helpers in helpers.c.
 */
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

bool vdev_remote_kick_may_spin(bool spinning_driver);
void vdev_remote_vring_interrupt(struct virtqueue *vq);
