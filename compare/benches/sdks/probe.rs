//! What the kernel says about this process and the calling thread (Linux `/proc`).

/// A `kB` or plain counter field of a `/proc/.../status` file.
fn status_field(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(field)?.strip_prefix(':')?;
                value.trim().trim_end_matches(" kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Times the calling thread gave the CPU up to wait (a lock, a channel, a page being read).
pub(crate) fn voluntary_switches() -> u64 {
    status_field("/proc/thread-self/status", "voluntary_ctxt_switches")
}

/// The process's peak resident memory, in MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    status_field("/proc/self/status", "VmHWM") as f64 / 1024.0
}

/// The process's anonymous resident memory now (heap, stacks), in MiB.
pub(crate) fn anon_rss_mib() -> f64 {
    status_field("/proc/self/status", "RssAnon") as f64 / 1024.0
}
