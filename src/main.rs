// mimalloc rather than glibc's malloc: see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (not exported by libmimalloc-sys: the option enum's
/// position in mimalloc v3's `mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Freed pages go back to the OS after 100 ms instead of mimalloc v3's default of 1 s: a
    // parse frees much of one phase's memory just before the next allocates on the other
    // thread, and with a 1 s delay both phases' pages count toward peak RSS. A 10,000-model
    // parse: 212-222 MB at 1 s, 198-204 MB at 100 ms, 191-195 MB at 10 ms (the last ~5%
    // slower, the first two alike). `MIMALLOC_PURGE_DELAY` in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called before any other thread starts; mimalloc reads the option on each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    }
    std::process::exit(rsdbt::cli::main());
}

#[cfg(test)]
mod tests {
    /// Guards the hand-written option number: a libmimalloc-sys update that moves the enum
    /// would otherwise set some other option silently.
    #[test]
    fn option_15_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc v3's documented default purge delay (`options.c`): 1000 ms.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, 1000);
    }
}
