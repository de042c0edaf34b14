// SPDX-License-Identifier: GPL-2.0

//! In-kernel tests: the shared header checks, the bounce pool and the
//! shadow rings run here exactly as the transport uses them (the same
//! files are tested more thoroughly on the host).

use kernel::prelude::*;

#[kunit_tests(lincell_vdev_remote)]
mod tests {
    use crate::shared::vdev::header::{check_header, config_access_ok, HeaderError};
    use crate::shared::vdev::pool::{words_for, Pool};
    use crate::shared::vdev::shadow::{split_layout, split_size, used_ring_size};
    use kernel::prelude::*;

    #[test]
    fn header_is_validated() -> Result {
        assert_eq!(check_header(1, 0x4c + 0x3c, 4096), Ok(0x3c));
        assert_eq!(
            check_header(0, 0x88, 4096),
            Err(HeaderError::BadRevision(0))
        );
        assert_eq!(
            check_header(1, 0x10000, 4096),
            Err(HeaderError::BadSize(0x10000))
        );
        assert!(!config_access_ok(0x3b, 2, 0x3c));
        Ok(())
    }

    #[test]
    fn pool_in_kernel_vec() -> Result {
        let mut words = KVec::new();
        words.resize(words_for(100), 0, GFP_KERNEL)?;
        let mut pool = Pool::new(words, 100, 10).ok_or(EINVAL)?;
        pool.reserve(0, 4096).map_err(|_| EINVAL)?;
        let a = pool.alloc(10_000).ok_or(ENOMEM)?;
        assert_eq!(a, 4096);
        assert!(pool.is_allocated(a + 9_000, 1000));
        pool.free(a, 10_000).map_err(|_| EINVAL)?;
        assert!(pool.free(a, 10_000).is_err());
        pool.clear();
        assert_eq!(pool.used_chunks(), 0);
        Ok(())
    }

    #[test]
    fn shared_ring_layout() -> Result {
        let l = split_layout(0x2000, 256);
        assert_eq!(l.avail, 0x2000 + 4096);
        assert_eq!(l.used % 4, 0);
        assert!(l.used + used_ring_size(256) <= 0x2000 + split_size(256));
        Ok(())
    }
}
