//! What the benchmarks read about a server process from `/proc`: CPU time, threads, RSS,
//! listening unix sockets; and the open-file limit they raise for many connections.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// `sysconf(_SC_CLK_TCK)`: the unit of `utime`/`stime` in `/proc/PID/stat` (100 on Linux,
/// so CPU times have 10 ms granularity).
pub fn clock_ticks_per_sec() -> anyhow::Result<u64> {
    // SAFETY: sysconf only reads a configuration value; _SC_CLK_TCK is a valid name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t)
        .ok()
        .filter(|&t| t > 0)
        .context("sysconf(_SC_CLK_TCK) failed")
}

/// User + system CPU time of every thread of process `pid`, living or exited, in clock
/// ticks (see [`clock_ticks_per_sec`]).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("cannot parse {path}: {stat:?}"))
}

/// User + system CPU time of the calling thread, in clock ticks.
pub fn thread_cpu_ticks() -> anyhow::Result<u64> {
    let path = "/proc/thread-self/stat";
    let stat = fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("cannot parse {path}: {stat:?}"))
}

/// `ticks` as a duration.
pub fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / per_sec.max(1) as f64)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 (state) is the first after the name; utime is field 14.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Threads of process `pid` (entries of `/proc/PID/task`).
pub fn thread_count(pid: u32) -> anyhow::Result<usize> {
    let path = format!("/proc/{pid}/task");
    Ok(fs::read_dir(&path)
        .with_context(|| format!("cannot list {path}"))?
        .count())
}

/// Resident set size of process `pid` (`VmRSS` in `/proc/PID/status`), KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Paths of the unix sockets that are listening in this network namespace (from
/// `/proc/net/unix`): a socket listed here accepts connections, without connecting to it
/// (a probe connection would be a frontend connection to the server under test).
pub fn listening_unix_paths() -> anyhow::Result<HashSet<PathBuf>> {
    let text = fs::read_to_string("/proc/net/unix").context("cannot read /proc/net/unix")?;
    Ok(parse_listening(&text))
}

/// `__SO_ACCEPTCON` in the Flags column of `/proc/net/unix`: the socket is listening.
const SO_ACCEPTCON: u32 = 1 << 16;

fn parse_listening(text: &str) -> HashSet<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            // Num RefCount Protocol Flags Type St Inode Path
            let mut f = l.split_whitespace();
            let flags = u32::from_str_radix(f.nth(3)?, 16).ok()?;
            let path: Vec<&str> = f.skip(3).collect();
            (flags & SO_ACCEPTCON != 0 && !path.is_empty()).then(|| PathBuf::from(path.join(" ")))
        })
        .collect()
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it).
/// Returns the new soft limit.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit whose soft limit does not exceed the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_fields_after_the_name() {
        // A name with spaces and a parenthesis; utime 1234, stime 56.
        let stat = "4242 (lay (er) pass) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 \
                    9 0 100 200000000 3000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1290));
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
        assert_eq!(parse_cpu_ticks("no name"), None);
    }

    #[test]
    fn cpu_ticks_of_this_process() {
        assert!(cpu_ticks(std::process::id()).is_ok());
        assert!(clock_ticks_per_sec().unwrap() > 0);
        assert!(thread_count(std::process::id()).unwrap() >= 1);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tlayerpass\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(20480));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn listening_sockets_only() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 1001 /var/tmp/b/d0.sock\n\
                    0000000000000000: 00000003 00000000 00000000 0001 03 1002 /var/tmp/b/d0.sock\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 1003 /tmp/with space.sock\n\
                    0000000000000000: 00000002 00000000 00010000 0005 01 1004\n\
                    0000000000000000: 00000002 00000000 00000000 0001 01 1005 /var/tmp/b/d1.sock\n";
        let got = parse_listening(text);
        assert_eq!(got.len(), 2);
        assert!(got.contains(&PathBuf::from("/var/tmp/b/d0.sock")));
        assert!(got.contains(&PathBuf::from("/tmp/with space.sock")));
    }
}
