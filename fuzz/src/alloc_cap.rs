//! The per-input allocation cap of the fuzz targets.
//!
//! libFuzzer's `-malloc_limit_mb` only works through a sanitizer's malloc
//! hooks: it asks for them with `__sanitizer_install_malloc_and_free_hooks`,
//! which without a sanitizer (`-s none`, the stable build) nobody defines, so
//! the limit would silently not apply. [`install!`](crate::install) defines that
//! function and a global allocator that calls the installed hooks on every Rust allocation:
//! libFuzzer then enforces `-malloc_limit_mb` itself (reporting
//! `out-of-memory (malloc(N))` and saving the input as `oom-…`).
//!
//! On top of that, [`begin_input`] starts counting every byte allocated (on any
//! thread) for one input: more than [`PER_INPUT_CAP`] in all is reported the
//! same way. Before either report, a Rust backtrace of the allocation is
//! printed (libFuzzer prints none without a sanitizer).
//!
//! Allocations of C code (zstd's, libFuzzer's own) do not go through the Rust
//! allocator and are not seen; `-rss_limit_mb` covers them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What one input may allocate in all, and in one allocation: 64 MiB.
pub const PER_INPUT_CAP: usize = 64 << 20;

/// libFuzzer's malloc hook: `void (*)(const volatile void *, size_t)`.
pub type MallocHook = extern "C" fn(*const c_void, usize);
/// libFuzzer's free hook: `void (*)(const volatile void *)`.
pub type FreeHook = extern "C" fn(*const c_void);

/// The installed malloc hook, as an address (0: none).
static MALLOC_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The installed free hook, as an address (0: none).
static FREE_HOOK: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated since [`begin_input`].
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Set while a report is being printed (its own allocations are not counted).
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the hooks libFuzzer passes to `__sanitizer_install_malloc_and_free_hooks`
/// (see [`install!`](crate::install)); returns 1: installed.
pub fn install_hooks(malloc_hook: Option<MallocHook>, free_hook: Option<FreeHook>) -> i32 {
    MALLOC_HOOK.store(malloc_hook.map_or(0, |f| f as usize), Ordering::SeqCst);
    FREE_HOOK.store(free_hook.map_or(0, |f| f as usize), Ordering::SeqCst);
    1
}

/// Installs [`CappedAlloc`] as the global allocator of a fuzz target and
/// defines `__sanitizer_install_malloc_and_free_hooks` there, where libFuzzer's
/// weak reference finds it (a definition in this library's archive would not
/// be linked: a weak reference pulls in no archive member).
#[macro_export]
macro_rules! install {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::alloc_cap::CappedAlloc = $crate::alloc_cap::CappedAlloc;

        /// Called by libFuzzer at start-up, where a sanitizer runtime would
        /// define it.
        #[unsafe(no_mangle)]
        pub extern "C" fn __sanitizer_install_malloc_and_free_hooks(
            malloc_hook: Option<$crate::alloc_cap::MallocHook>,
            free_hook: Option<$crate::alloc_cap::FreeHook>,
        ) -> i32 {
            $crate::alloc_cap::install_hooks(malloc_hook, free_hook)
        }
    };
}

/// Starts counting the allocations of a new input.
pub fn begin_input() {
    ALLOCATED.store(0, Ordering::SeqCst);
}

/// Prints what went over the cap (`what`: `bytes` bytes), with a backtrace,
/// then hands libFuzzer an allocation of `bytes` (over its limit), which makes
/// it save the input and exit. Without libFuzzer's hook, aborts.
///
/// Not while the thread panics: printing a panic's backtrace may allocate
/// plenty, and the panic is the finding. The flag is set before anything here
/// allocates, so the report's own allocations come back without a report.
#[cold]
fn over_cap(what: &str, bytes: usize) {
    if std::thread::panicking() || REPORTING.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!(
        "theta-fuzz: {what} of {bytes} bytes (cap {PER_INPUT_CAP} bytes per input), at:\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    match MALLOC_HOOK.load(Ordering::SeqCst) {
        0 => std::process::abort(),
        hook => {
            // SAFETY: the address was stored from a `MallocHook` by
            // `__sanitizer_install_malloc_and_free_hooks`.
            let hook: MallocHook = unsafe { std::mem::transmute::<usize, MallocHook>(hook) };
            hook(std::ptr::null(), bytes);
            std::process::abort();
        }
    }
}

/// Counts an allocation of `size` bytes before it is made; reports one over
/// the cap.
fn allocating(size: usize) {
    if REPORTING.load(Ordering::Relaxed) {
        return;
    }
    if size > PER_INPUT_CAP {
        over_cap("one allocation", size);
    }
    let total = ALLOCATED
        .fetch_add(size, Ordering::Relaxed)
        .saturating_add(size);
    if total > PER_INPUT_CAP {
        over_cap("allocations of one input in all", total);
    }
}

/// Tells libFuzzer of an allocation made.
fn allocated(ptr: *mut u8, size: usize) {
    let hook = MALLOC_HOOK.load(Ordering::Relaxed);
    if hook != 0 && !ptr.is_null() {
        // SAFETY: as in `over_cap`.
        let hook: MallocHook = unsafe { std::mem::transmute::<usize, MallocHook>(hook) };
        hook(ptr.cast_const().cast(), size);
    }
}

fn freed(ptr: *mut u8) {
    let hook = FREE_HOOK.load(Ordering::Relaxed);
    if hook != 0 {
        // SAFETY: the address was stored from a `FreeHook`.
        let hook: FreeHook = unsafe { std::mem::transmute::<usize, FreeHook>(hook) };
        hook(ptr.cast_const().cast());
    }
}

/// The system allocator, counting and reporting to libFuzzer (see the module
/// docs); a fuzz target installs it with [`install!`](crate::install).
pub struct CappedAlloc;

// SAFETY: every call is delegated unchanged to the system allocator; the
// bookkeeping around it only touches atomics (and, over the cap, prints and
// exits), and allocations it makes re-enter this allocator without holding
// any lock of it.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocating(layout.size());
        // SAFETY: the caller's contract.
        let ptr = unsafe { System.alloc(layout) };
        allocated(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocating(layout.size());
        // SAFETY: the caller's contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        allocated(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        freed(ptr);
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        allocating(new_size);
        freed(ptr);
        // SAFETY: the caller's contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        allocated(new, new_size);
        new
    }
}
