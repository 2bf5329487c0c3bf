//! The allowed range of every recipe value, in one place: checked when a recipe is loaded
//! (and when a run's saved recipe is read back), so that a bad value stops the run before it
//! starts, with the key, the value and what was expected, and never reaches a loader thread
//! or a kernel. Serde has already checked types, enum names and unknown keys; the model's own
//! rules are [`ModelConfig::validate`]'s, reported under `model.`.

use std::fmt::Display;

use anyhow::{Result, bail};
use vit_model::{ModelConfig, VitError, parse_device_name};

use super::Config;

/// Every problem of a recipe, one line each (`train.lr = -1: must be a positive number`); all
/// of them at once, so a user fixes a recipe in one go.
pub fn check(config: &Config) -> Result<()> {
    let mut r = Rules::default();
    let model = match config.model.config.validate() {
        Ok(()) => Some(&config.model.config),
        Err(e) => {
            r.problems.push(format!("{:#}", model_error(e)));
            None
        }
    };
    if let Some(m) = &model {
        model_for_training(&mut r, config, m);
    }
    data(&mut r, config, model);
    train(&mut r, config);
    if config.output.dir.as_os_str().is_empty() {
        r.fail("output.dir", "\"\"", "must name a folder");
    }
    if let Some(f) = &config.finetune
        && f.weights.as_os_str().is_empty()
    {
        r.fail("finetune.weights", "\"\"", "must name a weights file");
    }
    match r.problems.len() {
        0 => Ok(()),
        1 => bail!("{}", r.problems[0]),
        _ => bail!(
            "{} invalid values:\n  {}",
            r.problems.len(),
            r.problems.join("\n  ")
        ),
    }
}

/// The model's own rules ([`ModelConfig::validate`]) with the section named.
pub fn model_error(e: VitError) -> anyhow::Error {
    match e {
        VitError::InvalidConfig(message) => anyhow::anyhow!("model.{message}"),
        other => anyhow::Error::new(other).context("[model]"),
    }
}

fn model_for_training(r: &mut Rules, config: &Config, m: &ModelConfig) {
    if m.num_classes() == 0 {
        r.fail(
            "model.num_classes",
            0,
            "must be positive: a run trains a classifier",
        );
    }
    match m {
        ModelConfig::Vit(v) if v.depth == 0 => r.fail("model.depth", 0, "must be positive"),
        ModelConfig::Vit(_) => {}
        // Layer-wise decay scales the transformer's blocks (BEiT's rule); a ResNet has none.
        ModelConfig::Bit(_) => {
            if let Some(d) = config.train.layer_decay {
                r.fail(
                    "train.layer_decay",
                    d,
                    "applies to ViTs and hybrids only (a ResNet has no transformer blocks)",
                );
            }
        }
    }
}

fn data(r: &mut Rules, config: &Config, model: Option<&ModelConfig>) {
    let d = &config.data;
    for (key, split) in [("data.train", &d.train), ("data.test", &d.test)] {
        if split.is_empty() {
            r.fail(key, "\"\"", "must name a split (file prefix or subfolder)");
        }
    }
    if let Some(v) = &d.val
        && v.is_empty()
    {
        r.fail("data.val", "\"\"", "must name a split (or be left out)");
    }
    r.fraction_below_one("data.val_fraction", d.val_fraction);
    for (key, v) in [
        ("data.train_limit", d.train_limit),
        ("data.train_per_class", d.train_per_class),
        ("data.val_limit", d.val_limit),
    ] {
        if v == Some(0) {
            r.fail(key, 0, "must be positive (or left out)");
        }
    }
    if d.workers == 0 || d.workers > 256 {
        r.fail("data.workers", d.workers, "must be in 1..=256");
    }
    if let Some(m) = model {
        let c = m.in_channels();
        for (key, values) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if values.len() != c {
                r.fail(
                    key,
                    format!("{values:?}"),
                    format!("needs one value per input channel (model.in_channels = {c})"),
                );
            }
        }
        if let Some(names) = &d.classes
            && names.len() != m.num_classes()
        {
            r.fail(
                "data.classes",
                format!("[{} names]", names.len()),
                format!(
                    "needs one name per class (model.num_classes = {})",
                    m.num_classes()
                ),
            );
        }
        let a = &d.augment;
        let size = m.image_size();
        let min_side = size[0].min(size[1]);
        if a.crop_padding > min_side {
            r.fail(
                "data.augment.crop_padding",
                a.crop_padding,
                format!("must be at most the image's shorter side ({min_side})"),
            );
        }
    }
    if d.mean.iter().any(|v| !v.is_finite()) {
        r.fail(
            "data.mean",
            format!("{:?}", d.mean),
            "must be finite numbers",
        );
    }
    if d.std.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
        r.fail(
            "data.std",
            format!("{:?}", d.std),
            "must be positive numbers",
        );
    }
    if let Some(p) = d.crop_pct
        && !(p > 0.0 && p <= 1.0)
    {
        r.fail("data.crop_pct", p, "must be in (0, 1]");
    }
    if d.cache_max_side == 0 {
        r.fail(
            "data.cache_max_side",
            0,
            "must be a positive number of pixels",
        );
    }
    if d.cache_mb == 0 {
        r.fail("data.cache_mb", 0, "must be a positive number of MiB");
    }
    if d.shuffle_buffer == 0 {
        r.fail(
            "data.shuffle_buffer",
            0,
            "must be a positive number of samples",
        );
    }
    if d.shuffle_initial == 0 || d.shuffle_initial > d.shuffle_buffer.max(1) {
        r.fail(
            "data.shuffle_initial",
            d.shuffle_initial,
            format!("must be in [1, data.shuffle_buffer = {}]", d.shuffle_buffer),
        );
    }
    if let Err(e) = d.decoder.resolve() {
        r.fail("data.decoder", "\"turbojpeg\"", format!("{e:#}"));
    }
    let a = &d.augment;
    if let Some(s) = a.rrc_scale {
        r.ordered_range("data.augment.rrc_scale", s, "in (0, 1]", |v| {
            v > 0.0 && v <= 1.0
        });
    }
    if let Some(s) = a.rrc_ratio {
        r.ordered_range("data.augment.rrc_ratio", s, "positive and finite", |v| {
            v > 0.0 && v.is_finite()
        });
        if a.rrc_scale.is_none() {
            r.fail(
                "data.augment.rrc_ratio",
                format!("{s:?}"),
                "is used only by the random-resized crop: set data.augment.rrc_scale too",
            );
        }
    }
    if a.rand_ops > 16 {
        r.fail("data.augment.rand_ops", a.rand_ops, "must be in 0..=16");
    }
    if !(0.0..=10.0).contains(&a.rand_magnitude) {
        r.fail(
            "data.augment.rand_magnitude",
            a.rand_magnitude,
            "must be in [0, 10]",
        );
    }
    r.probability("data.augment.erase_prob", a.erase_prob);
    r.non_negative("data.augment.mixup_alpha", a.mixup_alpha);
    r.non_negative("data.augment.cutmix_alpha", a.cutmix_alpha);
}

fn train(r: &mut Rules, config: &Config) {
    let t = &config.train;
    if t.epochs == 0 {
        r.fail("train.epochs", 0, "must be positive");
    }
    if t.max_steps == Some(0) {
        r.fail("train.max_steps", 0, "must be positive (or left out)");
    }
    if t.batch_size == 0 {
        r.fail("train.batch_size", 0, "must be positive");
    }
    if t.accum_steps == 0 {
        r.fail("train.accum_steps", 0, "must be positive");
    } else if !t.batch_size.is_multiple_of(t.accum_steps) {
        r.fail(
            "train.batch_size",
            t.batch_size,
            format!(
                "must be a multiple of train.accum_steps ({})",
                t.accum_steps
            ),
        );
    }
    r.positive("train.lr", t.lr);
    r.non_negative("train.min_lr", t.min_lr);
    // (Against a valid lr only: a bad lr is one problem, not two.)
    if t.min_lr.is_finite() && t.lr.is_finite() && t.lr > 0.0 && t.min_lr > t.lr {
        r.fail(
            "train.min_lr",
            t.min_lr,
            format!("must be at most train.lr ({})", t.lr),
        );
    }
    r.non_negative("train.weight_decay", t.weight_decay);
    r.fraction_below_one("train.beta1", t.beta1);
    r.fraction_below_one("train.beta2", t.beta2);
    r.positive("train.eps", t.eps);
    r.fraction_below_one("train.momentum", t.momentum);
    if let Some(c) = t.clip_grad_norm {
        r.positive("train.clip_grad_norm", c);
    }
    if let Some(d) = t.layer_decay
        && !(d > 0.0 && d <= 1.0)
    {
        r.fail("train.layer_decay", d, "must be in (0, 1]");
    }
    r.fraction_below_one("train.label_smoothing", t.label_smoothing);
    if let Some(d) = t.ema_decay
        && !(d > 0.0 && d < 1.0)
    {
        r.fail(
            "train.ema_decay",
            d,
            "must be in (0, 1) (or left out: no average)",
        );
    }
    if t.ema_warmup && t.ema_decay.is_none() {
        r.fail("train.ema_warmup", true, "needs train.ema_decay");
    }
    if let Err(e) = parse_device_name(&t.device) {
        r.fail("train.device", format!("{:?}", t.device), e);
    }
}

/// Collects problems; each helper states one kind of range.
#[derive(Default)]
struct Rules {
    problems: Vec<String>,
}

impl Rules {
    fn fail(&mut self, key: &str, value: impl Display, expected: impl Display) {
        self.problems.push(format!("{key} = {value}: {expected}"));
    }

    /// In [0, 1].
    fn probability(&mut self, key: &str, v: f64) {
        if !(0.0..=1.0).contains(&v) {
            self.fail(key, v, "must be a probability in [0, 1]");
        }
    }

    /// In [0, 1).
    fn fraction_below_one(&mut self, key: &str, v: f64) {
        if !(0.0..1.0).contains(&v) {
            self.fail(key, v, "must be in [0, 1)");
        }
    }

    /// Finite and > 0.
    fn positive(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.fail(key, v, "must be a positive number");
        }
    }

    /// Finite and >= 0.
    fn non_negative(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.fail(key, v, "must be a number >= 0");
        }
    }

    /// `[low, high]` with `low <= high`, both satisfying `ok`.
    fn ordered_range(&mut self, key: &str, v: [f64; 2], what: &str, ok: impl Fn(f64) -> bool) {
        if !(ok(v[0]) && ok(v[1])) {
            self.fail(key, format!("{v:?}"), format!("both ends must be {what}"));
        } else if v[0] > v[1] {
            self.fail(
                key,
                format!("{v:?}"),
                "must be [low, high] with low <= high",
            );
        }
    }
}
