/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lincell ivshmem character device ABI: /dev/ivshmemN.
 *
 * Documented in Documentation/ivshmem-abi.md. The Rust twin of this file is
 * rust/ivshmem/uapi.rs; a host test checks that both agree byte for byte.
 */
#ifndef _UAPI_LINCELL_IVSHMEM_H
#define _UAPI_LINCELL_IVSHMEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IVSHMEM_IOC_MAGIC	0xbe
#define IVSHMEM_MAX_VECTORS	64

/* struct ivshmem_info.flags */
#define IVSHMEM_INFO_DOORBELL	(1U << 0)	/* interrupt vectors exist */
#define IVSHMEM_INFO_ONESHOT	(1U << 1)	/* one-shot mode on (v2); read re-enables */
#define IVSHMEM_INFO_SECTIONS	(1U << 2)	/* state table/R/W/output sections */

struct ivshmem_info {
	__u32 revision;		/* 1: QEMU ivshmem, 2: ivshmem 2.0 */
	__u32 own_id;		/* own peer id */
	__u32 max_peers;	/* peers including this one */
	__u32 vectors;		/* interrupt vectors, 0 if none */
	__u32 protocol;		/* v2 protocol, 0 on v1 */
	__u32 flags;		/* IVSHMEM_INFO_* */
	__u64 shmem_size;	/* whole shared-memory region */
	__u64 state_table_offset;	/* offsets are also mmap offsets */
	__u64 state_table_size;
	__u64 rw_offset;
	__u64 rw_size;
	__u64 output_offset;	/* peer n: output_offset + n * output_size */
	__u64 output_size;
};

struct ivshmem_ring {
	__u32 peer;
	__u32 vector;
};

/* A user buffer of `count` elements; `count` comes back as the number available. */
struct ivshmem_array {
	__u64 ptr;
	__u32 count;
	__u32 reserved;		/* must be 0 */
};

#define IVSHMEM_IOCTL_INFO	  _IOR(IVSHMEM_IOC_MAGIC, 0x00, struct ivshmem_info)
#define IVSHMEM_IOCTL_RING	  _IOW(IVSHMEM_IOC_MAGIC, 0x01, struct ivshmem_ring)
#define IVSHMEM_IOCTL_SET_STATE	  _IOW(IVSHMEM_IOC_MAGIC, 0x02, __u32)
#define IVSHMEM_IOCTL_GET_STATE	  _IOR(IVSHMEM_IOC_MAGIC, 0x03, __u32)
#define IVSHMEM_IOCTL_PEER_STATES _IOWR(IVSHMEM_IOC_MAGIC, 0x04, struct ivshmem_array)	/* __u32 each */
#define IVSHMEM_IOCTL_COUNTERS	  _IOWR(IVSHMEM_IOC_MAGIC, 0x05, struct ivshmem_array)	/* __u64 each */

/* read(2) returns one __u64: the mask of vectors that fired since the last read. */

#endif /* _UAPI_LINCELL_IVSHMEM_H */
