//! Run records: `metrics.jsonl` (one JSON object per line), TensorBoard's event files where the
//! recipe asks for them (`output.tensorboard`), and progress output.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::eval::EvalReport;
use crate::tensorboard::EventWriter;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MetricLine {
    /// `train`, `val`, `test`, or `end` (how the run, or this part of it, ended: [`Self::ended`]).
    pub split: String,
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub img_per_s: Option<f64>,
    /// Seconds since the run (or its resumption) started.
    pub time_s: f64,
    /// On the `end` line: `finished`, `interrupted (SIGINT)`, `non-finite loss`, `failed: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

impl MetricLine {
    /// The line of an evaluation of `split` at optimiser step `step` of epoch `epoch`.
    pub fn eval(
        split: &str,
        (step, epoch): (usize, usize),
        report: &EvalReport,
        time_s: f64,
    ) -> Self {
        Self {
            split: split.into(),
            step,
            epoch,
            loss: report.loss,
            top1: Some(report.top1),
            top5: Some(report.top5),
            lr: None,
            grad_norm: None,
            img_per_s: None,
            time_s,
            ended: None,
        }
    }

    /// The metrics of the line as TensorBoard scalars: (`split/name`, value).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        if self.ended.is_some() {
            return Vec::new();
        }
        let named = [
            ("loss", Some(self.loss)),
            ("top1", self.top1),
            ("top5", self.top5),
            ("lr", self.lr),
            ("grad_norm", self.grad_norm),
            ("img_per_s", self.img_per_s),
        ];
        named
            .into_iter()
            .filter_map(|(name, v)| Some((format!("{}/{name}", self.split), v?)))
            .collect()
    }
}

/// Appends metric lines to `metrics.jsonl` (and to an event file, with `output.tensorboard`).
pub struct Metrics {
    file: File,
    path: std::path::PathBuf,
    tensorboard: Option<EventWriter>,
}

impl Metrics {
    /// Opens `dir/metrics.jsonl` for appending. Resuming from the checkpoint of step
    /// `resume_at`, the lines logged after that step (by a run stopped before its next
    /// checkpoint) and a torn last line are dropped first, so that the steps run again are
    /// logged once.
    pub fn open(dir: &Path, resume_at: Option<usize>, tensorboard: bool) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        if let Some(step) = resume_at
            && path.exists()
        {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let kept: String = text
                .lines()
                .filter(|l| serde_json::from_str::<MetricLine>(l).is_ok_and(|m| m.step <= step))
                .map(|l| format!("{l}\n"))
                .collect();
            if kept.len() != text.len() {
                let tmp = path.with_extension("jsonl.tmp");
                std::fs::write(&tmp, kept)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .with_context(|| format!("cannot rewrite {}", path.display()))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let tensorboard = match tensorboard {
            true => Some(EventWriter::create(dir, resume_at)?),
            false => None,
        };
        Ok(Self {
            file,
            path,
            tensorboard,
        })
    }

    pub fn write(&mut self, line: &MetricLine) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(line)?)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        if let Some(tb) = self.tensorboard.as_mut() {
            for (tag, value) in line.scalars() {
                tb.scalar(&tag, value, line.step)?;
            }
        }
        Ok(())
    }
}

/// Reads `metrics.jsonl` back.
pub fn read_metrics(dir: &Path) -> Result<Vec<MetricLine>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("bad line in {}: {l}", path.display()))
        })
        .collect()
}

/// A progress bar on a terminal; plain lines every `every` steps otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    every: usize,
}

impl Progress {
    pub fn new(total: usize, done: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64).with_position(done as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} step {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Self {
            bar,
            every: (total / 50).clamp(1, 100),
        }
    }

    /// Reports a finished step.
    pub fn step(&self, step: usize, total: usize, loss: f64, lr: f64, img_s: f64, eta_s: f64) {
        let msg = format!("loss {loss:.4} lr {lr:.2e} {img_s:.0} img/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(step as u64);
                bar.set_message(msg);
            }
            None if step.is_multiple_of(self.every) || step == total => {
                println!("step {step}/{total} {msg} eta {:.0}s", eta_s);
            }
            None => {}
        }
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
