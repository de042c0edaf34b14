// SPDX-License-Identifier: GPL-2.0

//! A device's interrupt numbers, read from sysfs, for `lincell isolate
//! --keep-irqs-of DEVICE`.
//!
//! DEVICE is a character device node (its `/sys/dev/char/MAJ:MIN/device`),
//! a PCI address (`/sys/bus/pci/devices/ADDR`) or a sysfs device directory.
//! Its interrupts are the MSI/MSI-X vectors the kernel lists in `msi_irqs/`
//! (one entry per allocated IRQ, named by its number) or, without those, its
//! legacy `irq`. Every path is taken relative to a sysfs root so that the
//! host tests can give a fake tree.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `irqs` as the module's list syntax (`24,25`), duplicates dropped.
pub(crate) fn list(irqs: &[u32]) -> String {
    let mut seen: Vec<u32> = Vec::new();
    for &i in irqs {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The sysfs directory of `dev` under `sys`.
fn device_dir(sys: &Path, dev: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(dev).ok();
    if let Some(m) = meta.as_ref().filter(|m| m.file_type().is_char_device()) {
        let rdev = m.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        return Ok(sys.join(format!("dev/char/{major}:{minor}/device")));
    }
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Ok(dev.to_path_buf());
    }
    let text = dev.to_string_lossy();
    let pci = sys.join("bus/pci/devices").join(&*text);
    if !text.contains('/') && pci.exists() {
        return Ok(pci);
    }
    Err(Error::Usage(format!(
        "--keep-irqs-of {}: not a character device, a PCI address or a sysfs device directory",
        dev.display()
    )))
}

/// The interrupts of `dev` (see the module documentation), in ascending
/// order.
pub(crate) fn of_device(sys: &Path, dev: &Path) -> Result<Vec<u32>> {
    let dir = device_dir(sys, dev)?;
    let what = |why: &str| {
        Error::Failed(format!(
            "--keep-irqs-of {}: {} ({why})",
            dev.display(),
            dir.display()
        ))
    };
    let mut irqs: Vec<u32> = Vec::new();
    if let Ok(entries) = fs::read_dir(dir.join("msi_irqs")) {
        for e in entries.flatten() {
            let name = e.file_name();
            let irq = name
                .to_str()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| what("an msi_irqs entry that is not an IRQ number"))?;
            irqs.push(irq);
        }
    }
    if irqs.is_empty() {
        let legacy = fs::read_to_string(dir.join("irq"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|&i| i != 0);
        irqs.extend(legacy);
    }
    if irqs.is_empty() {
        return Err(what("the device has no interrupt: no msi_irqs/ and no irq"));
    }
    irqs.sort_unstable();
    Ok(irqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A fake sysfs with one PCI device `0000:00:04.0` and the files given.
    fn tree(files: &[(&str, &str)]) -> (TempDir, PathBuf) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let t = TempDir(std::env::temp_dir().join(format!(
            "lincell-irq-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )));
        let dev = t.path().join("bus/pci/devices/0000:00:04.0");
        fs::create_dir_all(&dev).unwrap();
        for (name, text) in files {
            let p = dev.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        (t, dev)
    }

    #[test]
    fn msi_vectors_are_the_device_s_interrupts() {
        let (t, dev) = tree(&[
            ("msi_irqs/25", "msix"),
            ("msi_irqs/24", "msix"),
            ("irq", "11\n"),
        ]);
        assert_eq!(
            of_device(t.path(), Path::new("0000:00:04.0")).unwrap(),
            [24, 25]
        );
        assert_eq!(of_device(t.path(), &dev).unwrap(), [24, 25]);
    }

    #[test]
    fn legacy_irq_without_msi() {
        let (t, _) = tree(&[("irq", "11\n")]);
        assert_eq!(
            of_device(t.path(), Path::new("0000:00:04.0")).unwrap(),
            [11]
        );
    }

    #[test]
    fn no_interrupt_or_no_device_is_an_error() {
        let (t, _) = tree(&[("irq", "0\n")]);
        let e = of_device(t.path(), Path::new("0000:00:04.0")).unwrap_err();
        assert!(e.to_string().contains("has no interrupt"), "{e}");
        let (t, _) = tree(&[("msi_irqs/x", "msix")]);
        assert!(of_device(t.path(), Path::new("0000:00:04.0")).is_err());
        for bad in ["0000:00:05.0", "/nonexistent/dev", "../0000:00:04.0"] {
            let e = of_device(t.path(), Path::new(bad)).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_drop_duplicates() {
        assert_eq!(list(&[24, 25, 24]), "24,25");
        assert_eq!(list(&[]), "");
    }

    #[test]
    fn the_module_command() {
        let cpus = |s: &str| lincell_shared::cpu_isolate::cpulist::parse(s.as_bytes()).unwrap();
        assert_eq!(crate::cpu::isolate_command(&cpus("1"), false, &[]), "1");
        assert_eq!(
            crate::cpu::isolate_command(&cpus("2-3"), true, &[]),
            "2-3 offline"
        );
        assert_eq!(
            crate::cpu::isolate_command(&cpus("1"), false, &[25, 24, 25]),
            "1 irqs=25,24"
        );
    }
}
