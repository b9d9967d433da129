//! CPU time and memory of processes and threads, read from /proc: the server's CPU seconds
//! (utime + stime of every thread), its peak RSS (VmHWM), and our own CPU, so the load
//! generator's cost is reported apart from the server's.

use std::time::Duration;

/// Clock ticks per second for /proc's utime/stime fields.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime from a /proc `stat` file (fields 14 and 15, after the parenthesised name,
/// which may itself contain spaces).
fn cpu_from_stat(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_second();
    Some(Duration::from_micros(ticks * 1_000_000 / tps))
}

/// CPU time a process has used so far, all threads included.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    cpu_from_stat(&format!("/proc/{pid}/stat"))
}

/// CPU time one of our own threads has used so far.
pub fn thread_cpu(tid: i32) -> Option<Duration> {
    cpu_from_stat(&format!("/proc/self/task/{tid}/stat"))
}

/// CPU time every core of the machine has spent busy so far (the `cpu` line of /proc/stat:
/// everything but idle and iowait). Compared with the server's and our own, it shows how much
/// other work shared the machine during a run.
pub fn machine_busy() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(Duration::from_micros(busy * 1_000_000 / ticks_per_second()))
}

/// Our own process's CPU time, all threads.
pub fn self_cpu() -> Option<Duration> {
    cpu_from_stat("/proc/self/stat")
}

/// The id of the calling thread, for `thread_cpu`.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak resident set size (VmHWM) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Current resident set size (VmRSS) in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Threads of a process.
pub fn threads(pid: u32) -> Option<u64> {
    status_kib(pid, "Threads:")
}

/// The CPU model line from /proc/cpuinfo and the number of online CPUs.
pub fn machine() -> (String, usize) {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (model, cores)
}

/// Raise the open-file limit to the hard limit: hundreds of peers each hold a UDP socket and
/// a WebSocket, and a spawned server inherits the limit for its side of them.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_figures() {
        let pid = std::process::id();
        assert!(process_cpu(pid).is_some());
        assert!(thread_cpu(current_tid()).is_some());
        assert!(peak_rss_kib(pid).is_some_and(|k| k > 0));
        assert!(rss_kib(pid).is_some_and(|k| k > 0));
        assert!(machine_busy().is_some());
        assert!(open_fds(pid).is_some_and(|n| n >= 3));
        assert!(threads(pid).is_some_and(|n| n >= 1));
    }
}
