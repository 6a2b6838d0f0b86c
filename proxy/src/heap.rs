//! glibc heap tuning for the data plane. By default glibc serves blocks of
//! 128 KiB and more with `mmap` and gives the top of the heap back to the
//! kernel as soon as 128 KiB of it is free; a proxy that allocates and frees
//! read buffers of that size for every burst of a large transfer then pays
//! a page fault per touched page and an `munmap` per buffer (about a fifth
//! of its CPU in `bench/mesh.sh`'s bulk mode). Blocks up to 1 MiB are kept
//! on the heap instead and up to 2 MiB of free heap is retained, which
//! bounds what this costs in memory.

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
