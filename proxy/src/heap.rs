//! glibc heap tuning for the data plane. By default glibc serves blocks of
//! 128 KiB and more with `mmap` and gives the top of the heap back to the
//! kernel as soon as 128 KiB of it is free; a proxy that allocates and frees
//! read buffers of that size for every burst of a large transfer then pays
//! a page fault per touched page and an `munmap` per buffer (about a fifth
//! of its CPU in `bench/mesh.sh`'s bulk mode). Blocks up to 1 MiB are kept
//! on the heap instead and up to 2 MiB of free heap is retained, which
//! bounds what this costs in memory. Free memory inside the heap (which the
//! top threshold does not reach) is given back by [`trim_if_bloated`],
//! which the sidecar's periodic sweep calls, so a burst's buffers do not
//! stay resident once it is over.

/// Largest block served from the heap rather than by `mmap`.
pub const MMAP_THRESHOLD: i32 = 1 << 20;
/// Free bytes at the top of the heap kept rather than returned.
pub const TRIM_THRESHOLD: i32 = 2 << 20;

/// Applies the thresholds (glibc only; elsewhere a no-op). Call once,
/// before the runtimes start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns the free heap left over from start-up (config parsing, TLS
/// setup) to the kernel, so an idle sidecar holds only what it uses.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Free heap, in bytes, above which [`trim_if_bloated`] trims.
pub const TRIM_FREE_ABOVE: usize = 1 << 20;

/// Returns the heap's free pages to the kernel if more than
/// [`TRIM_FREE_ABOVE`] bytes of it are free (glibc only; elsewhere a
/// no-op). Reports whether it trimmed.
pub fn trim_if_bloated() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        if free > TRIM_FREE_ABOVE {
            trim();
            return true;
        }
    }
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Memory freed inside the heap (holes between blocks still in use,
    /// which glibc's top-of-heap trimming never reaches) is found and
    /// trimmed.
    #[test]
    fn free_holes_inside_the_heap_are_trimmed() {
        const BLOCK: usize = 64 * 1024; // below glibc's default mmap threshold
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..256 {
            let block = vec![i as u8; BLOCK];
            if i % 2 == 0 {
                freed.push(block);
            } else {
                kept.push(block);
            }
        }
        drop(freed); // 8 MiB of holes between the kept blocks
        assert!(trim_if_bloated());
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, b)| b[0] == (2 * i + 1) as u8)
        );
    }
}
