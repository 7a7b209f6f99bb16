//! Work split over the machine's cores, results kept in input order: what a large project's
//! parse does many times (property files, test nodes, the manifest's nodes).

/// A helper thread's stack: the main thread's size, not a spawned thread's 2 MB (renders of
/// deeply nested macros run here too).
const STACK: usize = 8 << 20;

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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(cores).max(min_chunk.max(1));
    if items.len() <= chunk {
        return items.into_iter().map(&f).collect();
    }
    let mut parts: Vec<Vec<T>> = Vec::new();
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| {
                std::thread::Builder::new()
                    .stack_size(STACK)
                    .spawn_scoped(scope, move || part.into_iter().map(f).collect::<Vec<R>>())
                    .expect("spawn a thread")
            })
            .collect();
        let mut out: Vec<R> = first.into_iter().map(f).collect();
        for h in others {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// Runs `background` on a thread of its own while `f` runs on this one; both results. A panic
/// in `background` resumes here.
pub fn beside<A: Send, B>(background: impl FnOnce() -> A + Send, f: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(scope, background)
            .expect("spawn a thread");
        let b = f();
        let a = handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (a, b)
    })
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
}
