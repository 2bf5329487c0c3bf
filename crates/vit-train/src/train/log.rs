//! What a run tells its user and its records as it goes: the progress bar or lines, the
//! throughput window, `metrics.jsonl` (and TensorBoard's files), warnings about skipped files,
//! and the line saying how the run ended. The trainer calls it; it decides nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::eval::EvalReport;
use crate::report::{MetricLine, Metrics, Progress};

/// The record keeping of one process's part of a run.
pub struct RunLog {
    progress: Progress,
    metrics: Metrics,
    started: Instant,
    /// Images since the start of the current throughput window, and when it began.
    window: (Instant, usize),
    /// Training loss of each step run in this process.
    pub losses: Vec<f64>,
    /// Unreadable files left out, each reported once.
    pub skipped: BTreeSet<String>,
    stop: usize,
}

impl RunLog {
    /// Opens the run's records in `dir`; `resumed_at`: the step a resumed run continues from.
    pub fn open(
        dir: &Path,
        resumed_at: Option<usize>,
        tensorboard: bool,
        stop: usize,
    ) -> Result<Self> {
        let done = resumed_at.unwrap_or(0);
        Ok(Self {
            progress: Progress::new(stop, done),
            metrics: Metrics::open(dir, resumed_at, tensorboard)?,
            started: Instant::now(),
            window: (Instant::now(), 0),
            losses: Vec::new(),
            skipped: BTreeSet::new(),
            stop,
        })
    }

    /// Seconds since this process's part of the run started.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn println(&self, line: &str) {
        self.progress.println(line);
    }

    /// A file left out as unreadable: a warning the first time it is seen.
    pub fn skipped(&mut self, why: &str) {
        if self.skipped.insert(why.to_string()) {
            self.progress.println(&format!("warning: skipped: {why}"));
        }
    }

    /// A finished optimiser step: progress, throughput, the `train` line.
    pub fn step(
        &mut self,
        (step, epoch): (usize, usize),
        images: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
    ) -> Result<()> {
        self.losses.push(loss);
        self.window.1 += images;
        let secs = self.seconds();
        let img_s = self.window.1 as f64 / self.window.0.elapsed().as_secs_f64().max(1e-9);
        let eta = secs / self.losses.len() as f64 * self.stop.saturating_sub(step) as f64;
        self.progress.step(step, self.stop, loss, lr, img_s, eta);
        self.metrics.write(&MetricLine {
            split: "train".into(),
            step,
            epoch,
            loss,
            top1: None,
            top5: None,
            lr: Some(lr),
            grad_norm: Some(grad_norm),
            img_per_s: Some(img_s),
            time_s: secs,
            ended: None,
        })?;
        if self.window.0.elapsed().as_secs_f64() > 20.0 {
            self.window = (Instant::now(), 0);
        }
        Ok(())
    }

    /// An evaluation of `split` (`val`, `test`) at `(step, epoch)`.
    pub fn eval(
        &mut self,
        split: &str,
        at: (usize, usize),
        report: &EvalReport,
        ema: bool,
    ) -> Result<()> {
        if split == "val" {
            self.progress.println(&format!(
                "step {} epoch {}: val{} loss {:.4} top-1 {:.2}% top-5 {:.2}% ({:.0}s)",
                at.0,
                at.1,
                if ema { " (EMA)" } else { "" },
                report.loss,
                100.0 * report.top1,
                100.0 * report.top5,
                self.seconds()
            ));
        }
        self.metrics
            .write(&MetricLine::eval(split, at, report, self.seconds()))
    }

    /// How this part of the run ended, as the last line of `metrics.jsonl` (`split = "end"`,
    /// `loss` the last training loss); best effort: after a failed write it may not be written.
    pub fn end(&mut self, (step, epoch): (usize, usize), ended: &str) -> Result<()> {
        self.progress.finish();
        self.metrics.write(&MetricLine {
            split: "end".into(),
            step,
            epoch,
            loss: self.losses.last().copied().unwrap_or(0.0),
            top1: None,
            top5: None,
            lr: None,
            grad_norm: None,
            img_per_s: None,
            time_s: self.seconds(),
            ended: Some(ended.to_string()),
        })
    }
}
