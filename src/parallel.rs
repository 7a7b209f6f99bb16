//! Work split over the machine's cores, results kept in input order: what a large project's
//! parse does many times (property files, test nodes, the manifest's nodes).
//!
//! The threads are rayon-core's pool, started once per process. A parse calls these functions
//! dozens of times (`manifest.json` alone was 50 calls), and a thread spawned per call cost its
//! start-up, began with an empty allocator heap (fresh pages, zeroed by the kernel) and left
//! its pages abandoned when it ended. Work is handed out in small pieces that each thread takes
//! when it is free, so one slow stretch (models that need a full render among ones read
//! statically) does not leave the other core idle, as halves fixed in advance did.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// A pool thread's stack: the main thread's size, not a spawned thread's 2 MB (renders of
/// deeply nested macros run there too).
const STACK: usize = 8 << 20;

/// The machine's cores; starts the pool on first use. The pool has a thread per core although
/// the caller works too: a [`beside`] job holds one thread for its whole length, and a `map`
/// called meanwhile on the other side still finds a free thread.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Fails only if a global pool exists already: then that one is used.
        let _ = rayon_core::ThreadPoolBuilder::new()
            .num_threads(cores)
            .stack_size(STACK)
            .thread_name(|i| format!("rsdbt-worker-{i}"))
            .build_global();
        cores
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere is resumed by the scope; the data under the lock stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `f` of each item, on every core, in the order of `items`. Runs on the calling thread alone
/// when the slice is shorter than `min_chunk` per core (threads cost more than they save).
pub fn map<T: Sync, R: Send>(items: &[T], min_chunk: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_owned(items.iter().collect(), min_chunk, f)
}

/// [`map`] over owned items, each handed to `f` by value.
pub fn map_owned<T: Send, R: Send>(
    items: Vec<T>,
    min_chunk: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let min_chunk = min_chunk.max(1);
    let cores = cores();
    if cores == 1 || items.len() <= items.len().div_ceil(cores).max(min_chunk) {
        return items.into_iter().map(&f).collect();
    }
    // Eight pieces per core: small enough to even out, large enough that taking one is rare.
    let piece = (items.len() / (cores * 8)).max(min_chunk);
    let mut parts = Vec::new();
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(piece).collect();
        if part.is_empty() {
            break;
        }
        parts.push(Mutex::new(part));
    }
    let results: Vec<Mutex<Vec<R>>> = parts.iter().map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(i) else { break };
            let part = std::mem::take(&mut *lock(part));
            let out: Vec<R> = part.into_iter().map(&f).collect();
            *lock(&results[i]) = out;
        }
    };
    let work = &work;
    rayon_core::in_place_scope(|s| {
        for _ in 1..cores {
            s.spawn(move |_| work());
        }
        work();
    });
    let results: Vec<Vec<R>> = results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    // Sized once: a collect from `flat_map` grows by doubling, moving large results (a parse's
    // nodes) again each time, ~10 ms of one core for a large project.
    let mut all = Vec::with_capacity(results.iter().map(Vec::len).sum());
    for part in results {
        all.extend(part);
    }
    all
}

/// Runs `background` on a pool thread while `f` runs on this one; both results. A panic in
/// `background` resumes here.
pub fn beside<A: Send, B>(background: impl FnOnce() -> A + Send, f: impl FnOnce() -> B) -> (A, B) {
    cores();
    let mut a = None;
    let slot = &mut a;
    let b = rayon_core::in_place_scope(|s| {
        s.spawn(move |_| *slot = Some(background()));
        f()
    });
    // The scope returns only once its job ran, or resumes the job's panic.
    (a.expect("a scope's job runs before the scope ends"), b)
}

/// `produce` of each item on every core, the calling thread's included, and each result
/// handed to `consume` on the calling thread in the order of `items`; at most about `ahead`
/// results wait at a time. For writing a large file in order from parts serialized in
/// parallel, in bounded memory. The first error of `consume` stops the work and is returned.
pub fn pipeline<T: Sync, R: Send, E>(
    items: &[T],
    ahead: usize,
    produce: impl Fn(&T) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    struct State<R> {
        ready: BTreeMap<usize, R>,
        consumed: usize,
        stop: bool,
    }
    let ahead = ahead.max(1);
    let cores = cores();
    if cores == 1 || items.len() < 2 {
        return items.iter().try_for_each(|item| consume(produce(item)));
    }
    let state = Mutex::new(State {
        ready: BTreeMap::new(),
        consumed: 0,
        stop: false,
    });
    let changed = Condvar::new();
    let next = AtomicUsize::new(0);
    let stop = || {
        lock(&state).stop = true;
        changed.notify_all();
    };
    // A helper takes the next item once it is no more than `ahead` past what was consumed.
    let helper = || {
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let mut st = lock(&state);
                while i >= st.consumed + ahead && !st.stop {
                    st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.stop {
                    break;
                }
                drop(st);
                let r = produce(item);
                lock(&state).ready.insert(i, r);
                changed.notify_all();
            }
        }));
        if let Err(panic) = run {
            // The caller would wait for this item forever.
            stop();
            std::panic::resume_unwind(panic);
        }
    };
    let helper = &helper;
    let mut result = Ok(());
    rayon_core::in_place_scope(|s| {
        for _ in 1..cores {
            s.spawn(move |_| helper());
        }
        let mut done = 0;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            while done < items.len() {
                let mut st = lock(&state);
                if let Some(r) = st.ready.remove(&done) {
                    done += 1;
                    st.consumed = done;
                    drop(st);
                    changed.notify_all();
                    if let Err(e) = consume(r) {
                        result = Err(e);
                        return;
                    }
                    continue;
                }
                if st.stop {
                    return;
                }
                drop(st);
                // The next result is not there: make one rather than wait, unless that
                // would run too far ahead of the file.
                if next.load(Ordering::Relaxed) < done + ahead {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if let Some(item) = items.get(i) {
                        let r = produce(item);
                        lock(&state).ready.insert(i, r);
                        continue;
                    }
                }
                let mut st = lock(&state);
                while !st.ready.contains_key(&done) && !st.stop {
                    st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
        }));
        // Finished, failed or panicked: helpers waiting for room must not wait forever.
        stop();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_input_order() {
        let items: Vec<u32> = (0..10_000).collect();
        assert_eq!(
            super::map(&items, 16, |i| i * 2),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(super::map(&items[..3], 16, |i| i + 1), vec![1, 2, 3]);
        assert_eq!(
            super::map_owned(items.clone(), 16, |i| i * 2),
            super::map(&items, 16, |i| i * 2)
        );
    }

    #[test]
    fn a_pipeline_consumes_in_order_and_stops_at_the_first_error() {
        let items: Vec<u32> = (0..5_000).collect();
        let mut seen = Vec::new();
        let done: Result<(), ()> = super::pipeline(
            &items,
            8,
            |i| i * 3,
            |r| {
                seen.push(r);
                Ok(())
            },
        );
        assert_eq!(done, Ok(()));
        assert_eq!(seen, items.iter().map(|i| i * 3).collect::<Vec<_>>());

        let mut count = 0;
        let failed = super::pipeline(
            &items,
            8,
            |i| *i,
            |r| {
                count += 1;
                if r == 100 {
                    Err(format!("stopped at {r}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(failed, Err("stopped at 100".to_string()));
        assert_eq!(count, 101);
    }

    #[test]
    fn a_panic_in_a_pipeline_reaches_the_caller() {
        let items: Vec<u32> = (0..1_000).collect();
        let caught = std::panic::catch_unwind(|| {
            super::pipeline(
                &items,
                4,
                |i| assert!(*i != 500, "item 500"),
                |()| Ok::<(), ()>(()),
            )
        });
        assert!(caught.is_err());
    }

    #[test]
    fn beside_runs_both() {
        let (a, b) = super::beside(|| super::map(&[1, 2, 3], 1, |i| i * 10), || "here");
        assert_eq!((a, b), (vec![10, 20, 30], "here"));
    }
}
