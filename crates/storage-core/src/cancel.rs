//! Turning a `CancellationToken` into an immediate wake-up of blocked waiters.
//!
//! The token has no synchronous callback. Its `cancelled_owned()` future is
//! polled once, by hand, with a waker of our own; `cancel()` wakes that waker
//! synchronously (after releasing the token's locks), and the waker marks the
//! resource cancelled and wakes every waiter. No thread, no runtime, no timer.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll, Wake, Waker},
};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Something to tell when the token is cancelled.
pub(crate) trait OnCancel: Send + Sync + 'static {
    /// Called once the token is cancelled, on the cancelling thread.
    fn on_cancel(&self);
}

/// Keeps the registered future alive: dropping it deregisters the waker.
pub(crate) struct CancelWatch {
    /// Held only to stay registered; read by `Debug`.
    registration: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl std::fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelWatch")
            .field("armed", &self.registration.is_some())
            .finish()
    }
}

struct CancelWaker<T: OnCancel> {
    target: Weak<T>,
}

impl<T: OnCancel> Wake for CancelWaker<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(target) = self.target.upgrade() {
            target.on_cancel();
        }
    }
}

impl CancelWatch {
    /// Registers `target` to hear of `token`'s cancellation. When the token
    /// is already cancelled, `target.on_cancel()` runs before this returns.
    pub(crate) fn arm<T: OnCancel>(token: &CancellationToken, target: &Arc<T>) -> Self {
        let waker = Waker::from(Arc::new(CancelWaker {
            target: Arc::downgrade(target),
        }));
        let mut future = Box::pin(token.clone().cancelled_owned());
        let mut cx = Context::from_waker(&waker);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(()) => {
                target.on_cancel();
                Self { registration: None }
            }
            Poll::Pending => Self {
                registration: Some(future),
            },
        }
    }
}
