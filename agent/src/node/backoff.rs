//! Crash-restart backoff, kubelet's CrashLoopBackOff with Nomad's jitter and systemd's burst
//! limit: the first restart waits 10 s, each further one doubles up to 5 minutes, a process that
//! ran 10 minutes resets the delay, every delay gets up to 25 % random jitter, and no process is
//! ever restarted more than 5 times in 10 seconds.
//!
//! Pure bookkeeping: this module decides *when*, never *how*, a process is restarted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The policy's numbers.
#[derive(Clone, Debug)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Running this long resets the delay to `initial`.
    pub reset_after: Duration,
    /// Up to this fraction of the delay is added at random.
    pub jitter: f64,
    /// At most `burst` restarts within `burst_window`.
    pub burst: usize,
    pub burst_window: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
            jitter: 0.25,
            burst: 5,
            burst_window: Duration::from_secs(10),
        }
    }
}

/// The restart history of one process slot.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    /// Consecutive crashes since the last reset.
    pub crashes: u32,
    recent: VecDeque<Instant>,
}

impl Backoff {
    /// Record a crash of a process that started at `started` and exited at `now`; returns how
    /// long to wait before starting it again.
    pub fn crashed(
        &mut self,
        policy: &BackoffPolicy,
        started: Instant,
        now: Instant,
        random: f64,
    ) -> Duration {
        if now.saturating_duration_since(started) >= policy.reset_after {
            self.crashes = 0;
        }
        let exp = self.crashes.min(16);
        self.crashes = self.crashes.saturating_add(1);
        let base = policy
            .initial
            .checked_mul(1u32 << exp)
            .unwrap_or(policy.max)
            .min(policy.max);
        let jitter = base.mul_f64(policy.jitter * random.clamp(0.0, 1.0));
        let mut delay = base + jitter;
        // The burst limit: the restart must not be the (burst+1)-th within the window.
        while self.recent.len() >= policy.burst {
            let oldest = self.recent[self.recent.len() - policy.burst];
            let earliest = oldest + policy.burst_window;
            if now + delay >= earliest {
                break;
            }
            delay = earliest.saturating_duration_since(now);
        }
        self.recent.push_back(now + delay);
        while self.recent.len() > policy.burst {
            self.recent.pop_front();
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_10s_to_5min_with_bounded_jitter() {
        let p = BackoffPolicy::default();
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let started = now;
            now += Duration::from_secs(1);
            let d = b.crashed(&p, started, now, 0.0);
            delays.push(d.as_secs());
            now += d;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        let mut b = Backoff::default();
        let d = b.crashed(&p, t0, t0, 1.0);
        assert_eq!(d, Duration::from_millis(12_500));
    }

    #[test]
    fn ten_minutes_of_running_resets_the_delay() {
        let p = BackoffPolicy::default();
        let mut b = Backoff::default();
        let t0 = Instant::now();
        b.crashed(&p, t0, t0, 0.0);
        b.crashed(&p, t0, t0 + Duration::from_secs(30), 0.0);
        let started = t0 + Duration::from_secs(100);
        let d = b.crashed(&p, started, started + Duration::from_secs(601), 0.0);
        assert_eq!(d, Duration::from_secs(10));
    }

    #[test]
    fn never_more_than_five_restarts_in_ten_seconds() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            ..BackoffPolicy::default()
        };
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut restarts = Vec::new();
        for _ in 0..12 {
            let d = b.crashed(&p, now, now, 0.0);
            now += d;
            restarts.push(now);
        }
        for (i, t) in restarts.iter().enumerate() {
            let in_window = restarts[..=i]
                .iter()
                .filter(|r| t.duration_since(**r) < Duration::from_secs(10))
                .count();
            assert!(in_window <= 5, "restart {i}: {in_window} in 10 s");
        }
    }
}
