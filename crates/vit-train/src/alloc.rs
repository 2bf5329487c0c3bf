//! The allocator: mimalloc, told never to give freed memory back to the OS.
//!
//! Burn's CPU backend allocates fresh multi-megabyte buffers for every op. With the system
//! allocator, or mimalloc's default of purging freed memory after 10 ms, each of them is new
//! memory the kernel must zero on first touch: `clear_page_erms` was 30% of a ViT-Ti/16
//! training step's profile. Keeping freed memory (`purge_delay = -1`) makes the next op reuse
//! it: +25-30% training throughput for ViT-Ti/16 for +4% peak memory (BENCHMARKS.md).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49, pinned by
/// Cargo.lock; the crate exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the allocator settings; call first thing in `main`, before any thread starts.
/// An explicit `MIMALLOC_PURGE_DELAY` in the environment wins.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: plain option store; no other thread exists yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_is_the_option_we_set() {
        super::configure();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc's default is 10 ms: reading -1 back proves the index names purge_delay.
            // SAFETY: a plain option read of a valid option index.
            let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(v, -1);
        }
    }
}
