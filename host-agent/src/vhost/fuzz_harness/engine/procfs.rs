//! What the process holds, from `/proc/self`: threads, open files, mappings.

use std::fs;
use std::io;

/// Threads of the process.
pub fn threads() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/task")?.count())
}

/// Threads whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> io::Result<usize> {
    let mut n = 0;
    for t in fs::read_dir("/proc/self/task")? {
        // A thread may end while the directory is read.
        let Ok(comm) = fs::read_to_string(t?.path().join("comm")) else {
            continue;
        };
        n += usize::from(comm.starts_with(prefix));
    }
    Ok(n)
}

/// Open file descriptors of the process.
pub fn fds() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/fd")?.count())
}

/// Open file descriptors whose target mentions `name` (a memfd shows as
/// `/memfd:NAME (deleted)`).
pub fn fds_of(name: &str) -> io::Result<usize> {
    let mut n = 0;
    for e in fs::read_dir("/proc/self/fd")? {
        // The descriptor read_dir itself holds may be gone when read.
        let Ok(target) = fs::read_link(e?.path()) else {
            continue;
        };
        n += usize::from(target.to_string_lossy().contains(name));
    }
    Ok(n)
}

/// Mappings whose file mentions `name`.
pub fn maps_of(name: &str) -> io::Result<usize> {
    Ok(fs::read_to_string("/proc/self/maps")?
        .lines()
        .filter(|l| l.contains(name))
        .count())
}
