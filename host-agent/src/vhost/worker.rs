//! The queue workers: a fixed pool of threads serving the virtqueues of every disk of an
//! [`super::engine::Engine`], however many disks and queues there are.
//!
//! Each worker waits in its own epoll on the kick eventfds of the queues assigned to it (the
//! least-loaded worker takes each newly started queue). A kick runs a batch; with a poll
//! interval set, the queue then joins the worker's hot list: the worker keeps serving hot
//! queues without waiting for kicks (notifications off) and a queue that saw no request for
//! the poll interval goes back to notifications. With no hot queue the worker sleeps in
//! `epoll_wait` with no timeout, so an idle engine uses no CPU whatever its number of disks.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::vring::{Idle, MAX_BATCH, Pass, Vring};

/// The epoll token of a worker's wake eventfd (queue tokens start at 1).
const WAKE: u64 = 0;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 64;

/// Where a queue's kick fd is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    worker: usize,
    token: u64,
}

/// What one worker thread shares with the control thread.
#[derive(Debug)]
struct Shared {
    epoll: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    /// Queues by epoll token.
    queues: Mutex<HashMap<u64, Arc<Vring>>>,
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    shared: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
    next_token: AtomicU64,
    /// Queues registered per worker (the assignment's load measure).
    load: Vec<AtomicUsize>,
}

impl Pool {
    /// Starts `workers` threads (at least one) that poll a hot queue for `poll` after its
    /// last request.
    pub fn start(workers: usize, poll: Duration) -> io::Result<Self> {
        let workers = workers.max(1);
        let mut pool = Self {
            shared: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers),
            next_token: AtomicU64::new(WAKE + 1),
            load: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
        };
        for i in 0..workers {
            let shared = Arc::new(Shared {
                epoll: Epoll::new()?,
                wake: EventFd::new(EFD_NONBLOCK)?,
                stop: AtomicBool::new(false),
                queues: Mutex::new(HashMap::new()),
            });
            shared.epoll.ctl(
                ControlOperation::Add,
                shared.wake.as_raw_fd(),
                EpollEvent::new(EventSet::IN, WAKE),
            )?;
            let s = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vhost-q{i}"))
                .spawn(move || run(&s, poll));
            match thread {
                Ok(t) => {
                    pool.shared.push(shared);
                    pool.threads.push(t);
                }
                Err(e) => {
                    // Dropping `pool` stops the workers already started.
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Assigns a started queue to the least-loaded worker and waits for its kicks there.
    pub fn register(&self, vring: &Arc<Vring>, kick: &File) -> io::Result<Registration> {
        let worker = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| l.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i);
        let shared = &self.shared[worker];
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&shared.queues).insert(token, vring.clone());
        if let Err(e) = shared.epoll.ctl(
            ControlOperation::Add,
            kick.as_raw_fd(),
            EpollEvent::new(EventSet::IN, token),
        ) {
            lock(&shared.queues).remove(&token);
            return Err(e);
        }
        self.load[worker].fetch_add(1, Ordering::Relaxed);
        Ok(Registration { worker, token })
    }

    /// Stops waiting for a queue's kicks. The caller holds the queue's state lock and has
    /// marked it stopped, so a batch the worker has already begun is over and none follows.
    pub fn unregister(&self, reg: Registration, kick: &File) {
        let Some(shared) = self.shared.get(reg.worker) else {
            return;
        };
        if let Err(e) = shared.epoll.ctl(
            ControlOperation::Delete,
            kick.as_raw_fd(),
            EpollEvent::default(),
        ) {
            tracing::warn!(error = %e, "cannot remove a kick eventfd from its worker");
        }
        if lock(&shared.queues).remove(&reg.token).is_some() {
            self.load[reg.worker].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Queues registered, over all workers.
    pub fn queues(&self) -> usize {
        self.load.iter().map(|l| l.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for s in &self.shared {
            s.stop.store(true, Ordering::SeqCst);
            if let Err(e) = s.wake.write(1) {
                tracing::error!(error = %e, "cannot wake a queue worker to stop it");
            }
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a queue worker panicked");
            }
        }
    }
}

/// `epoll_wait`; `None` when interrupted or failed (logged, after a short pause so a broken
/// epoll cannot spin), so the caller's loop simply goes round again.
pub(super) fn wait(
    epoll: &Epoll,
    timeout: i32,
    events: &mut [EpollEvent],
    who: &str,
) -> Option<usize> {
    match epoll.wait(timeout, events) {
        Ok(n) => Some(n),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) => {
            tracing::error!(error = %e, "{who}: epoll_wait failed");
            std::thread::sleep(Duration::from_millis(10));
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A queue being polled.
struct Hot {
    token: u64,
    vring: Arc<Vring>,
    /// When polling it last found no request after finding some (`None`: it just did).
    idle_since: Option<Instant>,
    /// Polls in a row that found nothing.
    empty_polls: u32,
    /// How long it is polled without a request before it goes back to notifications.
    window: Duration,
}

/// The poll window of a queue that went back to notifications, kept to adapt it.
#[derive(Debug, Clone, Copy)]
struct Cold {
    window: Duration,
    since: Instant,
}

/// While queues are hot, the kicks of the others are looked for once per this many passes
/// (an `epoll_wait` is a system call; a pass over a hot queue is a few loads), or sooner once
/// the hot queues served [`MAX_BATCH`] requests since the last look, so a saturated hot
/// queue delays a notified one by about one batch.
const EPOLL_EVERY: u32 = 16;
/// An idle hot queue reads the clock once per this many empty polls.
const CLOCK_EVERY: u32 = 8;
/// A queue's poll window grows up to this many times the configured poll.
const MAX_WINDOW_FACTOR: u32 = 8;

/// The poll window for a queue kicked `gap` after it went back to notifications with
/// `window`: doubled (up to `max`) when polling a little longer would have caught the
/// request — the driver's turnaround is just longer than the window, as when a client
/// waits for an interrupt before submitting again, and every miss then costs a kick and a
/// wakeup on both sides —, halved (down to `base`) when the queue was idle for much longer
/// than `max` anyway.
fn adapt(window: Duration, gap: Duration, base: Duration, max: Duration) -> Duration {
    if gap < max {
        (window * 2).min(max)
    } else if gap > max * 8 {
        (window / 2).max(base)
    } else {
        window
    }
}

/// The worker thread.
fn run(shared: &Shared, poll: Duration) {
    let mut events = vec![EpollEvent::default(); EVENTS];
    let mut hot: Vec<Hot> = Vec::new();
    let mut cold: HashMap<u64, Cold> = HashMap::new();
    let polling = !poll.is_zero();
    let max_window = poll * MAX_WINDOW_FACTOR;
    let mut pass: u32 = 0;
    let mut since_epoll: usize = 0;
    loop {
        if hot.is_empty() || pass.is_multiple_of(EPOLL_EVERY) || since_epoll >= MAX_BATCH {
            since_epoll = 0;
            let timeout = if hot.is_empty() { -1 } else { 0 };
            let Some(n) = wait(&shared.epoll, timeout, &mut events, "queue worker") else {
                continue;
            };
            for ev in &events[..n] {
                let token = ev.data();
                if token == WAKE {
                    let _ = shared.wake.read();
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                let Some(vring) = lock(&shared.queues).get(&token).cloned() else {
                    // Unregistered after this event was taken.
                    cold.remove(&token);
                    continue;
                };
                let served = vring.serve(true, polling);
                if served == Pass::Stopped {
                    cold.remove(&token);
                    continue;
                }
                if polling && !hot.iter().any(|h| h.token == token) {
                    let window = cold.remove(&token).map_or(poll, |c| {
                        adapt(c.window, c.since.elapsed(), poll, max_window)
                    });
                    hot.push(Hot {
                        token,
                        vring,
                        idle_since: None,
                        empty_polls: 0,
                        window,
                    });
                }
            }
            // Queues unregistered while cold leave their entry behind: drop those now and
            // then, so the map stays as small as the worker's queues.
            if cold.len() > 64 && cold.len() > 2 * lock(&shared.queues).len() {
                let queues = lock(&shared.queues);
                cold.retain(|t, _| queues.contains_key(t));
            }
        }
        pass = pass.wrapping_add(1);
        hot.retain_mut(|h| match h.vring.serve(false, true) {
            Pass::Stopped => false,
            Pass::Served(n) if n > 0 => {
                since_epoll += n;
                h.idle_since = None;
                h.empty_polls = 0;
                true
            }
            Pass::Served(_) => {
                h.empty_polls = h.empty_polls.wrapping_add(1);
                if !h.empty_polls.is_multiple_of(CLOCK_EVERY) {
                    return true;
                }
                let now = Instant::now();
                let since = *h.idle_since.get_or_insert(now);
                if now.duration_since(since) < h.window {
                    return true;
                }
                match h.vring.go_idle() {
                    Idle::Work => {
                        h.idle_since = None;
                        h.empty_polls = 0;
                        true
                    }
                    Idle::Rearmed => {
                        cold.insert(
                            h.token,
                            Cold {
                                window: h.window,
                                since: now,
                            },
                        );
                        false
                    }
                    Idle::Stopped => false,
                }
            }
        });
        if !hot.is_empty() {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_window_follows_the_drivers_turnaround() {
        let us = Duration::from_micros;
        let (base, max) = (us(20), us(160));
        // Kicked soon after going cold: a longer window would have caught it.
        assert_eq!(adapt(us(20), us(30), base, max), us(40));
        assert_eq!(adapt(us(120), us(10), base, max), max);
        // Idle for long: back towards the configured poll.
        assert_eq!(adapt(us(160), Duration::from_millis(5), base, max), us(80));
        assert_eq!(adapt(us(20), Duration::from_secs(1), base, max), base);
        // In between: unchanged.
        assert_eq!(adapt(us(80), us(500), base, max), us(80));
    }
}
