//! Password hashing with bounded concurrency, on threads of its own.
//!
//! One Argon2 hash (the `argon2` crate's defaults: 19 MiB, 2 passes) holds
//! 19 MiB and a core for tens of milliseconds. Run unbounded on the
//! blocking pool, a flood of logins piles up hundreds of them: gigabytes of
//! memory, and every other request waits. Here one thread per core hashes,
//! a short queue (a semaphore's permits) waits its turn, and anything
//! beyond is refused at once (the routes answer 429 with `Retry-After`).

use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The hasher is at capacity: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What a client is told to wait when the hasher is busy, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Runs password hashing on `workers` threads of its own, with at most
/// `queue` more hashes waiting.
///
/// Threads of its own, not tokio's blocking pool: a thread's allocator
/// keeps the 19 MiB of its last hash for later use, and the blocking pool
/// hands successive hashes to ever new threads. Measured with hashing
/// bounded to two at a time on the blocking pool, five rounds of 200
/// concurrent logins left 750 MB behind; a fixed set of threads keeps one
/// hash's memory each (see `password.rs`).
#[derive(Debug, Clone)]
pub struct Hasher {
    /// One permit per hash admitted: running or waiting.
    admitted: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A place in the hasher's queue, taken before any other work (such as a
/// database lookup) so that a refused request costs nothing.
#[derive(Debug)]
pub struct Ticket {
    admitted: OwnedSemaphorePermit,
    jobs: mpsc::Sender<Job>,
}

impl Hasher {
    /// `workers` threads (at least one), `queue` more hashes waiting. The
    /// threads end when the last clone of the hasher is dropped.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for n in 0..workers {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("password-hasher-{n}"))
                .spawn(move || work_through(&inbox))
                .expect("the OS starts a password-hashing thread");
        }
        Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            jobs,
        }
    }

    /// One worker per core and a queue of twice that: a waiting request
    /// waits for at most two rounds of hashing.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 2 * cores)
    }

    /// A place in the queue, or [`Busy`] when it is full.
    pub fn ticket(&self) -> Result<Ticket, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        Ok(Ticket {
            admitted,
            jobs: self.jobs.clone(),
        })
    }

    /// Runs `work` when a worker is free, or refuses at once when the queue
    /// is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        Ok(self.ticket()?.run(work).await)
    }
}

impl Ticket {
    /// Runs `work` on the next free worker. The place is held until `work`
    /// ends, even if the request is dropped meanwhile: the bound holds for
    /// the work itself, not for whoever waits on it.
    pub async fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let place = self.admitted;
        let job: Job = Box::new(move || {
            let _place = place;
            let _ = answer.send(work());
        });
        self.jobs
            .send(job)
            .expect("the hashing threads live as long as the hasher");
        answered.await.expect("password hashing does not panic")
    }
}

/// A worker: runs jobs until every sender is gone. A job that panics loses
/// its answer (its request fails), not the thread.
fn work_through(inbox: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv()
        {
            Ok(job) => job,
            Err(mpsc::RecvError) => return,
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}
