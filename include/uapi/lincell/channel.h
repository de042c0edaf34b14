/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lincell message channel: the shared-memory layout of one single-producer,
 * single-consumer ring of messages, for C real-time code talking to the
 * Rust implementation (rust/channel.rs) across cells.
 *
 * Every field is a little-endian __u32. The producer block is written only
 * by the sender, the consumer block only by the receiver, so each may live
 * in its writer's own output section (ivshmem 2.0, lincell's v1 layout) or
 * both in the R/W section. Both blocks are 8-byte aligned.
 *
 * Sending (one message of len <= slot_size - 8 bytes):
 *   1. read the consumer block: if magic == LINCELL_CHANNEL_CONSUMER_MAGIC
 *      and epoch == the producer's epoch, used = head - tail (mod 2^32),
 *      else used = head; the ring is full if used >= slots (and used must
 *      never exceed slots: the receiver is corrupt);
 *   2. write len, 0 and the payload into slot[head % slots];
 *   3. release barrier, then head = head + 1;
 *   4. full barrier, then if the receiver's flags has
 *      LINCELL_CHANNEL_WAITING, ring the receiver's doorbell.
 * Receiving:
 *   1. read head (acquire); validate magic, epoch, slots and slot_size
 *      against what was seen at attach (a change means the sender created
 *      the ring again: attach again); head - tail must not exceed slots;
 *   2. if head != tail: read len (<= slot_size - 8, else corrupt) and the
 *      payload of slot[tail % slots];
 *   3. release barrier, then tail = tail + 1;
 *   4. full barrier, then if the sender's flags has LINCELL_CHANNEL_WAITING,
 *      ring the sender's doorbell.
 * Sleeping (either side): set own flags = LINCELL_CHANNEL_WAITING, full
 * barrier, re-check the ring; sleep on the doorbell only if nothing
 * changed; clear the flag after waking.
 * Attaching (receiver): needs a producer block with the magic and version;
 * tail = 0 if head <= slots (the messages sent before it attached are its),
 * else tail = head; write epoch, tail, flags = 0, and the magic last.
 */
#ifndef _UAPI_LINCELL_CHANNEL_H
#define _UAPI_LINCELL_CHANNEL_H

#include <linux/types.h>

#define LINCELL_CHANNEL_PRODUCER_MAGIC	0x514d434cU	/* "LCMQ" in memory */
#define LINCELL_CHANNEL_CONSUMER_MAGIC	0x434d434cU	/* "LCMC" in memory */
#define LINCELL_CHANNEL_VERSION		1
#define LINCELL_CHANNEL_WAITING		1U	/* flags bit 0 */
#define LINCELL_CHANNEL_MAX_SLOTS	65536	/* slots: a power of two */
#define LINCELL_CHANNEL_MIN_SLOT_SIZE	16	/* slot_size: a multiple of 8 */
#define LINCELL_CHANNEL_MAX_SLOT_SIZE	65536

/* The producer block; slots start at offsetof(..., slot_area). */
struct lincell_channel_producer {
	__le32 magic;
	__le32 version;
	__le32 slot_size;	/* bytes per slot, header included */
	__le32 slots;
	__le32 epoch;		/* new (and != 0) each time the ring is created */
	__le32 head;		/* messages published, free-running */
	__le32 flags;		/* LINCELL_CHANNEL_WAITING: wants a doorbell */
	__le32 reserved[9];
	__u8 slot_area[];	/* at 0x40: slots x slot_size bytes */
};

/* One slot. */
struct lincell_channel_slot {
	__le32 len;		/* payload bytes */
	__le32 reserved;	/* 0 */
	__u8 payload[];		/* at 0x08 */
};

/* The consumer block (64 bytes). */
struct lincell_channel_consumer {
	__le32 magic;
	__le32 epoch;		/* the producer epoch attached to */
	__le32 tail;		/* messages consumed, free-running */
	__le32 flags;		/* LINCELL_CHANNEL_WAITING: wants a doorbell */
	__le32 reserved[12];
};

#endif /* _UAPI_LINCELL_CHANNEL_H */
