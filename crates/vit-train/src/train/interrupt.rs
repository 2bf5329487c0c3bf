//! Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop): the first signal is
//! noted, and the trainer finishes its step, writes `last` and exits 130 / 143; a second
//! signal while that happens exits at once (the previous checkpoint intact: checkpoints are
//! written aside and renamed into place).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// A signal the trainer stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Signal {
    fn number(self) -> usize {
        match self {
            Signal::Int => SIGINT as usize,
            Signal::Term => SIGTERM as usize,
        }
    }

    /// The shell's exit status of a process stopped by the signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        128 + self.number() as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }
}

/// Whether a stop was asked for: by a signal (once [`Interrupt::install`]ed) or by
/// [`Interrupt::request`] (in-process callers, tests).
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    signal: Arc<AtomicUsize>,
    pending: Arc<AtomicBool>,
}

impl Interrupt {
    /// Not connected to any signal: only [`Self::request`] sets it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Catches SIGINT and SIGTERM for the rest of the process.
    pub fn install() -> Result<Self> {
        let me = Self::new();
        for signal in [Signal::Int, Signal::Term] {
            let n = signal.number() as i32;
            // Registered first, so it runs first: once a stop is pending, the next signal ends
            // the process at once.
            signal_hook::flag::register_conditional_shutdown(
                n,
                i32::from(signal.exit_code()),
                me.pending.clone(),
            )
            .and_then(|_| signal_hook::flag::register(n, me.pending.clone()))
            .and_then(|_| signal_hook::flag::register_usize(n, me.signal.clone(), n as usize))
            .with_context(|| format!("cannot catch {}", signal.name()))?;
        }
        Ok(me)
    }

    /// Asks for a stop as `signal` would.
    pub fn request(&self, signal: Signal) {
        self.signal.store(signal.number(), Ordering::SeqCst);
        self.pending.store(true, Ordering::SeqCst);
    }

    /// The signal of a pending stop, if one came.
    pub fn requested(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n if n == SIGTERM as usize => Some(Signal::Term),
            _ => Some(Signal::Int),
        }
    }
}
