// SPDX-License-Identifier: GPL-2.0

//! The ivshmem 2.0 vendor-specific PCI capability (ID 09h).
//!
//! ```text
//! +00 ID (09h)   +01 next   +02 length (18h, or 20h with a base address)
//! +03 privileged control (bit 0: one-shot interrupt mode, read/write)
//! +04 u32 state table size   +08 u64 R/W section size
//! +10 u64 output section size   +18 u64 base address (optional)
//! ```
//!
//! A hypervisor fills it in; the driver still checks every field.

use core::fmt;

use super::layout::SectionSizes;

/// PCI capability ID of the vendor-specific capability.
pub const CAP_ID_VENDOR: u8 = 0x09;
/// Offset of the privileged control byte in the capability.
pub const PRIV_CONTROL: usize = 0x03;
/// Privileged control bit: one-shot interrupt mode.
pub const PRIV_ONE_SHOT: u8 = 1 << 0;

/// The decoded capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Capability {
    /// Section sizes.
    pub sizes: SectionSizes,
    /// Base address of the shared memory when it is not in BAR2.
    pub base: Option<u64>,
    /// One-shot interrupt mode is currently on.
    pub one_shot: bool,
}

/// Why the capability is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// Not the vendor capability.
    WrongId,
    /// The length byte is neither 18h nor 20h, or the bytes are cut short.
    BadLength,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapError::WrongId => "not the vendor capability",
            CapError::BadLength => "bad vendor capability length",
        })
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Length of the capability without a base address (shared memory in BAR2).
pub const LEN_WITHOUT_BASE: u8 = 0x18;
/// Length of the capability with a base address.
pub const LEN_WITH_BASE: u8 = 0x20;

/// Why a capability cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The state table size does not fit the capability's 32-bit field.
    StateTableTooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::StateTableTooLarge => f.write_str("state table size exceeds 32 bits"),
        }
    }
}

impl V2Capability {
    /// The capability's bytes as a device presents them in configuration
    /// space, with `next` as the next-capability pointer: the inverse of
    /// [`parse`] (used by device models, which own these values).
    ///
    /// The returned array is [`LEN_WITH_BASE`] long; only the first
    /// [`LEN_WITHOUT_BASE`] bytes belong to the capability when `base` is
    /// `None`, the rest is zero.
    pub fn encode(&self, next: u8) -> Result<[u8; LEN_WITH_BASE as usize], EncodeError> {
        let state_table =
            u32::try_from(self.sizes.state_table).map_err(|_| EncodeError::StateTableTooLarge)?;
        let mut c = [0u8; LEN_WITH_BASE as usize];
        c[0] = CAP_ID_VENDOR;
        c[1] = next;
        c[2] = if self.base.is_some() {
            LEN_WITH_BASE
        } else {
            LEN_WITHOUT_BASE
        };
        c[PRIV_CONTROL] = if self.one_shot { PRIV_ONE_SHOT } else { 0 };
        c[0x04..0x08].copy_from_slice(&state_table.to_le_bytes());
        c[0x08..0x10].copy_from_slice(&self.sizes.rw.to_le_bytes());
        c[0x10..0x18].copy_from_slice(&self.sizes.output.to_le_bytes());
        if let Some(base) = self.base {
            c[0x18..0x20].copy_from_slice(&base.to_le_bytes());
        }
        Ok(c)
    }
}

/// Decodes the capability from its bytes in configuration space.
pub fn parse(cap: &[u8]) -> Result<V2Capability, CapError> {
    if cap.first() != Some(&CAP_ID_VENDOR) {
        return Err(CapError::WrongId);
    }
    let len = usize::from(*cap.get(2).ok_or(CapError::BadLength)?);
    if (len != 0x18 && len != 0x20) || cap.len() < len {
        return Err(CapError::BadLength);
    }
    let field = |v: Option<u64>| v.ok_or(CapError::BadLength);
    Ok(V2Capability {
        sizes: SectionSizes {
            state_table: field(le_u32(cap, 0x04).map(u64::from))?,
            rw: field(le_u64(cap, 0x08))?,
            output: field(le_u64(cap, 0x10))?,
        },
        base: if len == 0x20 {
            Some(field(le_u64(cap, 0x18))?)
        } else {
            None
        },
        one_shot: cap
            .get(PRIV_CONTROL)
            .is_some_and(|c| c & PRIV_ONE_SHOT != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(len: u8) -> [u8; 0x20] {
        let mut c = [0u8; 0x20];
        c[0] = 0x09;
        c[2] = len;
        c[3] = 1;
        c[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
        c[8..16].copy_from_slice(&0x10000u64.to_le_bytes());
        c[16..24].copy_from_slice(&0x4000u64.to_le_bytes());
        c[24..32].copy_from_slice(&0xfe00_0000u64.to_le_bytes());
        c
    }

    #[test]
    fn decodes_both_lengths() {
        let c = parse(&cap(0x18)).unwrap();
        assert_eq!(
            c.sizes,
            SectionSizes {
                state_table: 0x1000,
                rw: 0x10000,
                output: 0x4000
            }
        );
        assert_eq!((c.base, c.one_shot), (None, true));
        assert_eq!(parse(&cap(0x20)).unwrap().base, Some(0xfe00_0000));
    }

    #[test]
    fn encode_is_the_inverse_of_parse() {
        for base in [None, Some(0xfe00_0000)] {
            for one_shot in [false, true] {
                let c = V2Capability {
                    sizes: SectionSizes {
                        state_table: 0x1000,
                        rw: 0x10_0000,
                        output: 0x2000,
                    },
                    base,
                    one_shot,
                };
                let bytes = c.encode(0x60).unwrap();
                assert_eq!((bytes[0], bytes[1]), (CAP_ID_VENDOR, 0x60));
                assert_eq!(parse(&bytes), Ok(c));
            }
        }
        let huge = V2Capability {
            sizes: SectionSizes {
                state_table: 1 << 32,
                rw: 0,
                output: 0,
            },
            base: None,
            one_shot: false,
        };
        assert_eq!(huge.encode(0), Err(EncodeError::StateTableTooLarge));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse(&[]), Err(CapError::WrongId));
        assert_eq!(parse(&[0x10, 0, 0x18]), Err(CapError::WrongId));
        assert_eq!(parse(&cap(0x19)), Err(CapError::BadLength));
        assert_eq!(parse(&cap(0x20)[..0x1f]), Err(CapError::BadLength));
        assert_eq!(parse(&cap(0x18)[..3]), Err(CapError::BadLength));
    }
}
