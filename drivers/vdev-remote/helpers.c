// SPDX-License-Identifier: GPL-2.0
/*
 * The one C helper vdev_remote needs: page_address() is a macro or a static
 * inline depending on the configuration, so Rust cannot call it directly.
 */
#include <linux/mm.h>
#include "virtio.h"

void *vdev_remote_page_address(struct page *page)
{
	return page_address(page);
}
