"""Per-call timing for the Python peers, the same measure as the native driver's: every
thread calls `once()` in a loop for `seconds` (or `max_calls` calls, whichever comes first),
timing each call; the result has the median and p99 of all threads' per-call latencies and
the throughput (calls of all threads / wall time)."""

import threading
import time


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def run(make_once, threads, seconds, warmup_s=0.2, max_calls=200_000):
    """`make_once()` is called in each thread and returns that thread's call (so each thread
    can have its own state, e.g. a gRPC stub or nothing)."""
    barrier = threading.Barrier(threads)
    results = [None] * threads

    def worker(i):
        once = make_once()
        clock = time.perf_counter_ns
        w_end = clock() + int(warmup_s * 1e9)
        while clock() < w_end:
            once()
        samples = []
        append = samples.append
        barrier.wait()
        start = clock()
        deadline = start + int(seconds * 1e9)
        t0 = start
        while True:
            once()
            t1 = clock()
            append(t1 - t0)
            if t1 >= deadline or len(samples) >= max_calls:
                break
            t0 = clock()
        results[i] = (samples, start, t1)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if any(r is None for r in results):
        raise RuntimeError("a benchmark thread failed")
    start = min(r[1] for r in results)
    end = max(r[2] for r in results)
    samples = sorted(s for r in results for s in r[0])
    return {
        "threads": threads,
        "calls": len(samples),
        "median_ns": percentile(samples, 0.5),
        "p99_ns": percentile(samples, 0.99),
        "throughput": len(samples) / ((end - start) / 1e9),
    }
