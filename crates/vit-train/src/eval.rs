//! Evaluation: loss, top-1, top-5, per-class accuracy and the confusion matrix.

use std::sync::Arc;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use vit_model::Model;

use crate::data::ImageSet;
use crate::data::loader::{Loader, Mode, plan};
use crate::data::transforms::Transform;

/// Results of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub images: usize,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    /// Accuracy of each class (by label).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Images of the split left out as unreadable (`on_bad_image = "skip"`; each named on
    /// stderr): `images` counts the others.
    pub skipped: usize,
}

/// Batch images as a `[B, C, H, W]` tensor on `device`.
pub fn images_tensor(images: Vec<f32>, b: usize, shape: [usize; 3], device: &Device) -> Tensor<4> {
    let [c, h, w] = shape;
    Tensor::from_data(TensorData::new(images, [b, c, h, w]), device)
}

/// Soft-target cross-entropy, mean over the batch: `-(t * log_softmax(logits)).sum(1).mean()`.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// Evaluates `model` (in eval mode, without autodiff) on `set`.
pub fn evaluate(
    model: &Model,
    set: Arc<ImageSet>,
    transform: Arc<Transform>,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<EvalReport> {
    let model = model.valid();
    let k = set.classes.len();
    let batches = plan(set.len(), batch_size, Mode::Eval, false);
    let loader = Loader::new(set.clone(), batches, 0, Mode::Eval, transform, workers);
    let (mut loss_sum, mut top1, mut top5) = (0.0, 0usize, 0usize);
    let mut confusion = vec![vec![0usize; k]; k];
    let mut seen = 0usize;
    let mut skipped = 0usize;
    for batch in loader {
        let batch = batch?;
        for why in &batch.skipped {
            eprintln!("warning: skipped: {why}");
        }
        skipped += batch.skipped.len();
        let b = batch.len();
        seen += b;
        let x = images_tensor(batch.images, b, set.shape, device);
        let logits = model.forward(x)?;
        let t = Tensor::<2>::from_data(TensorData::new(batch.targets, [b, k]), device);
        loss_sum +=
            f64::from(soft_cross_entropy(logits.clone(), t).into_scalar::<f32>()) * b as f64;
        let scores = logits.into_data().convert::<f32>().try_into_vec::<f32>()?;
        for (row, &label) in scores.chunks_exact(k).zip(&batch.labels) {
            let mine = row[label as usize];
            // Rank of the true class: how many classes score higher.
            let rank = row.iter().filter(|&&s| s > mine).count();
            let pred = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, &s)| if s > row[best] { i } else { best });
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
            confusion[label as usize][pred] += 1;
        }
    }
    // An accuracy is over the whole split (less the files it could not read, counted) or
    // not reported at all.
    if seen + skipped != set.len() {
        bail!(
            "evaluation saw {seen} of the split's {} images; no accuracy reported",
            set.len()
        );
    }
    let n = seen.max(1) as f64;
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let total: usize = row.iter().sum();
            if total == 0 {
                0.0
            } else {
                row[i] as f64 / total as f64
            }
        })
        .collect();
    Ok(EvalReport {
        skipped,
        images: seen,
        loss: loss_sum / n,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        per_class,
        confusion,
    })
}

impl EvalReport {
    /// A human-readable report with class names.
    pub fn render(&self, classes: &[String]) -> String {
        let mut s = format!(
            "images {}  loss {:.4}  top-1 {:.2}%  top-5 {:.2}%{}\n\nper-class accuracy:\n",
            self.images,
            self.loss,
            100.0 * self.top1,
            100.0 * self.top5,
            if self.skipped > 0 {
                format!("  ({} unreadable images skipped)", self.skipped)
            } else {
                String::new()
            }
        );
        let width = classes.iter().map(|c| c.len()).max().unwrap_or(1).max(5);
        for (c, acc) in classes.iter().zip(&self.per_class) {
            s += &format!("  {c:>width$}  {:6.2}%\n", 100.0 * acc);
        }
        s += "\nconfusion matrix (rows: true class, columns: predicted):\n";
        s += &format!("  {:>width$}", "");
        for i in 0..classes.len() {
            s += &format!(" {i:>5}");
        }
        s += "\n";
        for (i, row) in self.confusion.iter().enumerate() {
            s += &format!(
                "  {:>width$}",
                format!("{i} {}", classes[i])
                    .chars()
                    .take(width)
                    .collect::<String>()
            );
            for v in row {
                s += &format!(" {v:>5}");
            }
            s += "\n";
        }
        s
    }
}
