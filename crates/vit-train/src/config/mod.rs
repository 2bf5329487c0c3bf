//! The TOML recipe: `[model]`, `[data]`, `[train]`, `[output]`, and `[finetune]` to start
//! from pretrained weights (which also switches the `[train]` defaults to the paper's
//! fine-tuning recipe, [`FINETUNE_DEFAULTS`]). Unknown keys are rejected, and every value
//! is checked against its allowed range ([`rules`]) when the recipe is loaded; errors name
//! the file, the key, the value and what was expected. `--set key=value` overrides any key.

pub mod model;
pub mod rules;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vit_model::{CropMode, Interpolation, Preprocessing, ResampleMode, WeightFormat};

pub use crate::data::decode::Decoder;
pub use crate::data::image_folder::Cache;
pub use model::ModelSection;

/// A whole recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The architecture.
    pub model: ModelSection,
    /// Where the data is and how it is augmented.
    pub data: DataSection,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainSection,
    /// Where results go.
    #[serde(default)]
    pub output: OutputSection,
    /// Start from pretrained weights (fine-tuning); absent: train from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSection>,
}

/// `[finetune]`: the pretrained checkpoint and how it is adapted (the paper's section 3.2).
/// The checkpoint's head and pre-logits layer are dropped and a zero-initialised
/// `Linear(D, model.num_classes)` attached; position embeddings are resampled to
/// `model.image_size`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    /// Pretrained checkpoint: timm safetensors / `.pth`, HF ViT / DINOv2, JAX `.npz`.
    pub weights: PathBuf,
    /// Force the checkpoint format (`timm`, `hf-vit`, `hf-dinov2`, `jax`); default: detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_format: Option<WeightFormat>,
    /// Position-embedding resampling: `timm` (default), `jax`, `hf`, `bilinear`, `nearest`.
    #[serde(default = "default_resample")]
    pub posemb_resample: ResampleMode,
    /// Train only the new head (a linear probe); the backbone stays as loaded.
    #[serde(default)]
    pub freeze_backbone: bool,
}

fn default_resample() -> ResampleMode {
    ResampleMode::Timm
}

/// `[train]` defaults of a recipe with a `[finetune]` section, for keys it does not set: the
/// paper's fine-tuning recipe (SGD momentum 0.9, no weight decay, global-norm clipping at
/// 1, linear warmup then cosine decay; vit_jax's defaults of 500 warmup steps and lr 0.03).
pub const FINETUNE_DEFAULTS: &str = r#"
optimizer = "sgd"
momentum = 0.9
weight_decay = 0.0
clip_grad_norm = 1.0
warmup_steps = 500
schedule = "cosine"
lr = 0.03
"#;

/// Data set file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// MNIST-family IDX files (`{split}-images-idx3-ubyte[.gz]`, `{split}-labels-idx1-ubyte[.gz]`).
    Idx,
    /// CIFAR-10 binary (`data_batch_{1..5}.bin`, `test_batch.bin`).
    Cifar10,
    /// CIFAR-100 binary (`train.bin`, `test.bin`), fine labels.
    Cifar100,
    /// One folder per class of image files.
    ImageFolder,
    /// WebDataset tar shards: `data.train` / `data.test` / `data.val` are shard patterns
    /// (`train-{000000..000146}.tar`, `{a,b}` lists), relative to `data.root`.
    #[serde(rename = "webdataset")]
    WebDataset,
}

impl DataFormat {
    /// Formats of encoded images of any size, which go through timm's pipeline (decode,
    /// random-resized crop, evaluation resize and crop).
    pub fn is_encoded(self) -> bool {
        matches!(self, DataFormat::ImageFolder | DataFormat::WebDataset)
    }
}

/// What to do with an image file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadImage {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Print a warning naming the file and leave it out.
    Skip,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// File format.
    pub format: DataFormat,
    /// Folder holding the files (relative to the working directory).
    pub root: PathBuf,
    /// Training split: IDX file prefix (`train`) or image-folder subfolder (`train`).
    #[serde(default = "default_train_split")]
    pub train: String,
    /// Test split: IDX prefix (`t10k`) or image-folder subfolder (`val`).
    #[serde(default = "default_test_split")]
    pub test: String,
    /// A separate validation split (prefix or subfolder); otherwise `val_fraction` of train.
    pub val: Option<String>,
    /// Fraction of the training split held out for validation (seeded). Default 0: validate on
    /// the test split.
    #[serde(default)]
    pub val_fraction: f64,
    /// Use only the first N training images (after the validation split); for quick runs.
    pub train_limit: Option<usize>,
    /// Use only the first N training images of each class (few-shot transfer).
    pub train_per_class: Option<usize>,
    /// Validate during training on the first N validation images only (the final test
    /// evaluation still uses the whole test split).
    pub val_limit: Option<usize>,
    /// Resize in-memory images (bicubic) to `model.image_size` and repeat grayscale to 3
    /// channels when the model has 3: a pretrained RGB model at its own resolution.
    #[serde(default)]
    pub resize: bool,
    /// Class names, in label order; image folders name their own.
    pub classes: Option<Vec<String>>,
    /// Per-channel mean of pixels scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of pixels scaled to [0, 1].
    pub std: Vec<f32>,
    /// Loader threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Undecodable image files in an image folder.
    #[serde(default)]
    pub on_bad_image: OnBadImage,
    /// Image folders, evaluation transform (timm's `crop_pct`): the image is resized so that
    /// the centre crop of the input size keeps this fraction of it. Left out: the `[model]`
    /// preset's timm config (0.9 for the 224-px models, 1.0 at 384 and 518 px), else timm's
    /// default 0.875.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_pct: Option<f64>,
    /// Image folders, evaluation transform (timm's `crop_mode`): `center` (short side, then
    /// the centre crop), `squash` (both sides), `border` (long side, padded with the mean).
    /// Left out: the preset's timm config, else `center`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_mode: Option<CropMode>,
    /// Image folders, evaluation transform: the resize's filter (Pillow's antialiased
    /// `bilinear`, `bicubic`, `box`, `hamming`, `lanczos`). Left out: the preset's timm config
    /// (`bicubic`), else `bicubic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpolation: Option<Interpolation>,
    /// Image folders: the JPEG decoder, `auto` (libjpeg-turbo where built in, else the
    /// `image` crate), `image` or `turbojpeg`.
    #[serde(default)]
    pub decoder: Decoder,
    /// Image folders: hold the training images decoded in memory, `auto` (when they fit in
    /// `cache_mb`), `on` or `off` (read and decode every image each time it is used).
    #[serde(default)]
    pub cache: Cache,
    /// Cached images larger than this (longest side, px) are reduced to it first (Pillow's
    /// bicubic); FFCV holds ImageNet at 500.
    #[serde(default = "default_cache_max_side")]
    pub cache_max_side: usize,
    /// Memory budget of the cache, MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// WebDataset shards: the shuffle buffer mixing samples across shards (samples). Default
    /// 8192, timm's `reader_wds`.
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
    /// WebDataset shards: samples in the buffer before the first one is taken. Default 2048,
    /// timm's.
    #[serde(default = "default_shuffle_initial")]
    pub shuffle_initial: usize,
    /// Training augmentation.
    #[serde(default)]
    pub augment: AugmentSection,
}

fn default_cache_max_side() -> usize {
    512
}
fn default_cache_mb() -> usize {
    4096
}
fn default_shuffle_buffer() -> usize {
    crate::data::webdataset::order::SHUFFLE_BUFFER
}
fn default_shuffle_initial() -> usize {
    crate::data::webdataset::order::SHUFFLE_INITIAL
}

impl DataSection {
    /// The evaluation preprocessing of image folders: the recipe's keys, else the preset's
    /// timm config (`preset`), else timm's defaults (crop_pct 0.875, center, bicubic).
    pub fn preprocessing(&self, preset: Option<&str>) -> Preprocessing {
        let base = preset.map(Preprocessing::for_preset);
        Preprocessing {
            mean: self.mean.clone(),
            std: self.std.clone(),
            crop_pct: self
                .crop_pct
                .or(base.as_ref().map(|b| b.crop_pct))
                .unwrap_or(vit_model::preprocessing::DEFAULT_CROP_PCT),
            crop_mode: self
                .crop_mode
                .or(base.as_ref().map(|b| b.crop_mode))
                .unwrap_or_default(),
            interpolation: self
                .interpolation
                .or(base.as_ref().map(|b| b.interpolation))
                .unwrap_or_default(),
        }
    }
}

fn default_train_split() -> String {
    "train".into()
}
fn default_test_split() -> String {
    "test".into()
}
fn default_workers() -> usize {
    2
}

/// `[data.augment]`: every transform is off unless set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSection {
    /// Zero-pad by this many pixels, then crop back at a random place.
    #[serde(default)]
    pub crop_padding: usize,
    /// Random-resized crop: area fraction range, e.g. `[0.08, 1.0]`.
    pub rrc_scale: Option<[f64; 2]>,
    /// Random-resized crop: aspect-ratio range. Default `[3/4, 4/3]`.
    pub rrc_ratio: Option<[f64; 2]>,
    /// Random-resized crop: the resize's filter, `bilinear` (default: torchvision's, and the
    /// JAX code's inception crop), `bicubic`, or `random` (one of the two per image, timm's
    /// `--train-interpolation random`).
    #[serde(default)]
    pub rrc_interpolation: RrcInterpolation,
    /// Flip left-right with probability 0.5.
    #[serde(default)]
    pub hflip: bool,
    /// RandAugment-style ops: how many per image (0 = off).
    #[serde(default)]
    pub rand_ops: usize,
    /// RandAugment magnitude, 0-10.
    #[serde(default = "default_magnitude")]
    pub rand_magnitude: f64,
    /// Random erasing probability (Zhong et al.), 0 = off.
    #[serde(default)]
    pub erase_prob: f64,
    /// Mixup alpha (0 = off).
    #[serde(default)]
    pub mixup_alpha: f64,
    /// CutMix alpha (0 = off). With both on, each batch uses one of them at random.
    #[serde(default)]
    pub cutmix_alpha: f64,
}

fn default_magnitude() -> f64 {
    9.0
}

/// The random-resized crop's filter (Pillow's antialiased ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RrcInterpolation {
    #[default]
    Bilinear,
    Bicubic,
    /// Bilinear or bicubic, drawn per image (timm's `random`).
    Random,
}

/// Optimisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW with PyTorch's defaults (eps 1e-8).
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// Learning-rate decay after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine from the peak to `min_lr`.
    Cosine,
    /// Linear from the peak to `min_lr`.
    Linear,
    /// Constant at the peak.
    Constant,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Passes over the training split.
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides `epochs` when smaller).
    pub max_steps: Option<usize>,
    /// Images per optimiser step (= micro-batch x accum_steps).
    pub batch_size: usize,
    /// Gradient accumulation: micro-batches per optimiser step.
    pub accum_steps: usize,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end of the decay.
    pub min_lr: f64,
    /// Decoupled weight decay (not on biases, norms, LayerScale, cls token, pos embedding).
    pub weight_decay: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon (PyTorch's 1e-8, not Burn's 1e-5).
    pub eps: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Linear warmup from 0, in optimiser steps.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// Clip the global gradient norm (over all parameters) to this value.
    pub clip_grad_norm: Option<f64>,
    /// Layer-wise learning-rate decay (timm's `param_groups_layer_decay`, BEiT): block `i`
    /// (from 0) of `L` gets `lr * layer_decay^(L - i)`, the stem `lr * layer_decay^(L + 1)`,
    /// the final norm as the last block, the head `lr`.
    pub layer_decay: Option<f64>,
    /// Label smoothing.
    pub label_smoothing: f64,
    /// Keep an exponential moving average of the weights with this decay (timm's
    /// `--model-ema-decay`, e.g. 0.999), updated after every optimiser step; the run then
    /// validates, tests and delivers the averaged weights. Left out: no average.
    pub ema_decay: Option<f64>,
    /// Warm the average's decay up as timm's `--model-ema-warmup` does: update `n` uses
    /// `min(ema_decay, 1 - n^(-2/3))`, so the random initial weights fade fast.
    pub ema_warmup: bool,
    /// Seed of init, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Validate (and checkpoint) every N steps as well as at each epoch end; 0 = epoch ends only.
    pub eval_every: usize,
    /// Write the `last` checkpoint every N steps, without validating (an ImageNet epoch is
    /// hours); 0 = only where the run validates.
    pub checkpoint_every: usize,
    /// Device name (`cpu`, `wgpu`, `cuda`, ...).
    pub device: String,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: 10,
            max_steps: None,
            batch_size: 128,
            accum_steps: 1,
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            min_lr: 0.0,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.9,
            warmup_steps: 0,
            schedule: Schedule::Cosine,
            clip_grad_norm: Some(1.0),
            layer_decay: None,
            label_smoothing: 0.0,
            ema_decay: None,
            ema_warmup: false,
            seed: 42,
            eval_every: 0,
            checkpoint_every: 0,
            device: "cpu".into(),
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Run folder: metrics.jsonl, checkpoints, curves.
    pub dir: PathBuf,
    /// Also write TensorBoard event files (`events.out.tfevents.*`: the metrics of
    /// `metrics.jsonl` by step) into the run folder. Default false.
    #[serde(default)]
    pub tensorboard: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runs/default"),
            tensorboard: false,
        }
    }
}

impl Config {
    /// Reads a recipe and applies `key=value` overrides (TOML values; bare words are strings).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut value: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        for item in overrides {
            apply_override(&mut value, item).with_context(|| format!("--set {item}"))?;
        }
        if value.contains_key("finetune") {
            let train = value
                .entry("train")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(train) = train.as_table_mut() {
                let defaults: toml::Table =
                    toml::from_str(FINETUNE_DEFAULTS).expect("valid defaults");
                for (k, v) in defaults {
                    train.entry(k).or_insert(v);
                }
            }
        }
        let mut config = Self::from_table(value)
            .with_context(|| format!("invalid config {}", path.display()))?;
        config.resolve_defaults();
        config
            .check()
            .with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    /// Deserialises a table; errors name the key path (`train.lr: invalid type ...`).
    pub fn from_table(table: toml::Table) -> Result<Self> {
        let de = toml::Value::Table(table);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // `[model]` names its own keys (`key `model.depth`: ...`); the TOML
            // deserializer's own `in `model`` line after it says nothing more.
            if inner.starts_with("key `") {
                anyhow::anyhow!("{}", inner.lines().next().unwrap_or_default())
            } else {
                anyhow::anyhow!("key `{path}`: {inner}")
            }
        })
    }

    /// Records in the recipe the evaluation preprocessing it leaves to the preset's timm
    /// config (`data.crop_pct`, `crop_mode`, `interpolation`), so that the saved recipe says
    /// what the run used.
    pub fn resolve_defaults(&mut self) {
        if !self.data.format.is_encoded() {
            return;
        }
        let p = self.data.preprocessing(self.model.preset.as_deref());
        self.data.crop_pct = Some(p.crop_pct);
        self.data.crop_mode = Some(p.crop_mode);
        self.data.interpolation = Some(p.interpolation);
    }

    /// Every value within its allowed range ([`rules::check`]).
    pub fn check(&self) -> Result<()> {
        rules::check(self)
    }
}

/// Sets `a.b.c = value` in a TOML table; the value is parsed as TOML, or taken as a string.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .context("expected key=value, e.g. train.lr=3e-4")?;
    let key = key.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|s| !s.is_empty()).context("empty key")?;
    let mut cur = table;
    for part in parts {
        cur = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("`{part}` in `{key}` is not a section"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
