//! The `vit-train` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vit_model::{CropMode, Interpolation, ResampleMode, WeightFormat};

use crate::config::Decoder;

/// `--decoder`'s values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderArg {
    Auto,
    Image,
    Turbojpeg,
}

impl From<DecoderArg> for Decoder {
    fn from(d: DecoderArg) -> Self {
        match d {
            DecoderArg::Auto => Decoder::Auto,
            DecoderArg::Image => Decoder::Image,
            DecoderArg::Turbojpeg => Decoder::Turbojpeg,
        }
    }
}

/// Train, evaluate and run Vision Transformers. Without a subcommand, trains.
#[derive(Parser, Debug)]
#[command(name = "vit-train", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model from a recipe (the default).
    Train(TrainArgs),
    /// Evaluate a checkpoint, or pretrained weights on an image folder (timm's validate.py):
    /// loss, top-1, top-5, per-class accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Fine-tune pretrained weights on a data set (the recipe's `[finetune]` section, or
    /// --weights): new zero head, resampled position embeddings, the paper's SGD recipe.
    Finetune(FinetuneArgs),
    /// Classify image files with a checkpoint or with pretrained weights.
    Predict(PredictArgs),
    /// The paper's figures for a model: attention rollout over images, mean attention
    /// distance by depth, position-embedding similarity, embedding filters.
    Inspect(InspectArgs),
    /// Write a checkpoint's model as a timm-named safetensors file.
    Export(ExportArgs),
    /// Show the model, data and schedule a recipe describes, without training.
    Info(InfoArgs),
    /// List the presets (parameters, the timm model each is) and the models of the local
    /// Hugging Face cache that resolve to one.
    Models(ModelsArgs),
    /// Write WebDataset tar shards from an image folder (CLASS/IMAGE): shuffled samples
    /// (KEY.jpg|png|..., KEY.cls, KEY.json), classes.txt and PREFIX.index.json beside them.
    Shards(ShardsArgs),
    /// The backends compiled in, the GPUs (and software rasterizers) they reach, and what
    /// `--device auto` picks here.
    Devices(DevicesArgs),
}

/// `devices`.
#[derive(Args, Debug, Clone)]
pub struct DevicesArgs {
    /// One JSON object instead of the listing.
    #[arg(long)]
    pub json: bool,
}

/// `models [PATTERN]`.
#[derive(Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Show only names containing this (case-insensitive).
    pub pattern: Option<String>,
}

/// `vit-train shards`.
#[derive(Args, Debug, Clone)]
pub struct ShardsArgs {
    /// The image folder of one split (CLASS/IMAGE files), e.g. datasets/imagenet/train.
    #[arg(long)]
    pub from: PathBuf,
    /// Folder for the shards (created; existing shards of the prefix are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// At most this much per shard: 1GB, 500MB, 64MiB, ...
    #[arg(long, default_value = "1GB")]
    pub shard_size: String,
    /// Re-encode (JPEG quality 90, after a Pillow-exact bicubic reduction) images whose
    /// longest side is above this many pixels; others are stored as they are.
    #[arg(long)]
    pub max_side: Option<usize>,
    /// Shard names: PREFIX-000000.tar, ... (default: the folder's name, e.g. train).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Seed of the samples' order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A recipe and overrides.
#[derive(Args, Debug, Clone, Default)]
pub struct RecipeArgs {
    /// TOML recipe (see configs/).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override a recipe key, e.g. `--set train.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct InfoArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Print one JSON object instead (family, parameters, forward FLOPs per image, images per
    /// optimiser step, max_steps): exact numbers for scripts, e.g. `cargo xtask compare`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Device: cpu (Flex), ndarray, wgpu, wgpu:N, vulkan[:N], metal[:N], cuda[:N], auto.
    /// Overrides train.device; with --resume, moves the run to this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Continue the run of this checkpoint (or run folder) exactly where it stopped, with the
    /// recipe saved in it (on its device, or --device's).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many optimiser steps in all, with a checkpoint (the learning-rate
    /// schedule still spans the whole run): training in sessions, continued with --resume.
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<usize>,
}

/// `eval`: a run's checkpoint on its recipe's data, or pretrained weights on an image
/// folder (timm's `validate.py`).
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[command(flatten)]
    pub source: ModelArgs,
    /// Split to evaluate: a checkpoint's recipe split (test, val or train; default test), or
    /// with --weights the subfolder of --data (default val).
    #[arg(long)]
    pub split: Option<String>,
    /// Data folder: instead of the recipe's data.root for a checkpoint; with --weights, the
    /// folder holding `<split>/<class>/<image>` (classes in sorted order).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Loader threads (default: the recipe's data.workers, else 2).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Leave out images that cannot be read (counted in the report) instead of stopping.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Class names, one per line in class order (default: the folder's or the recipe's).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Which model to run and how images are prepared for it: a run's checkpoint, or pretrained
/// weights on a preset with timm's evaluation transform (`predict` and `inspect`).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint folder (or a run folder) of a vit-train run.
    #[arg(long, conflicts_with_all = ["weights", "model"], required_unless_present = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Pretrained weights instead of a checkpoint: a file (timm safetensors / .pth, HF ViT /
    /// DINOv2, JAX .npz; needs --model), or a model id in the local Hugging Face cache,
    /// `hf-hub:ORG/NAME[@REVISION]` or `timm/NAME` (architecture, preprocessing and labels
    /// from its config.json).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Architecture of --weights: a preset name (e.g. vit_base_patch16_224), or a recipe
    /// .toml whose [model] section describes it (for a model id: instead of its config's).
    #[arg(long)]
    pub model: Option<String>,
    /// Force the format of --weights: timm, hf-vit, hf-dinov2 or jax (default: detect).
    #[arg(long, requires = "weights")]
    pub weights_format: Option<WeightFormat>,
    /// Input size HxW (or one number) for --weights, when not the preset's: position
    /// embeddings are resampled on load.
    #[arg(long, requires = "weights")]
    pub image_size: Option<String>,
    /// Position-embedding resampling for --image-size: timm, jax, hf, bilinear, nearest.
    #[arg(long, default_value = "timm", requires = "weights")]
    pub posemb_resample: ResampleMode,
    /// Per-channel mean for --weights (default: the preset's timm config, 0.5,0.5,0.5 for
    /// the ViTs).
    #[arg(long, value_delimiter = ',', requires = "weights")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation for --weights (default: the preset's timm config).
    #[arg(long, value_delimiter = ',', requires = "weights")]
    pub std: Option<Vec<f32>>,
    /// timm's crop_pct: images are resized so that the centre crop of the input size keeps
    /// this fraction (default: the preset's timm config, 0.9 at 224 px and 1.0 at 384; for a
    /// checkpoint, its recipe's).
    #[arg(long)]
    pub crop_pct: Option<f64>,
    /// timm's crop_mode: center (short side to size / crop_pct), squash (both sides), border
    /// (long side, padded with the mean colour).
    #[arg(long)]
    pub crop_mode: Option<CropMode>,
    /// The resize's filter: bilinear, bicubic, box, hamming, lanczos (Pillow's, antialiased;
    /// default: the preset's timm config, bicubic).
    #[arg(long)]
    pub interpolation: Option<Interpolation>,
    /// JPEG decoder: auto, image (pure Rust), turbojpeg (libjpeg-turbo, Pillow's pixels).
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderArg>,
    /// Device: cpu (default), ndarray, wgpu, wgpu:N, vulkan[:N], metal[:N], cuda[:N], auto.
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    #[command(flatten)]
    pub source: ModelArgs,
    /// Class names, one per line, in class order (default: the class index).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// One JSON object per image and line.
    #[arg(long)]
    pub json: bool,
    /// With --json: every class's logit too, in class order.
    #[arg(long)]
    pub logits: bool,
}

/// How the heads of a layer are fused for attention rollout.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFusion {
    /// The mean over heads (Abnar & Zuidema).
    Mean,
    /// The largest weight over heads.
    Max,
    /// The smallest weight over heads.
    Min,
}

#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: ModelArgs,
    /// Folder for the figures (created when missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace figures of the same names already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the numbers as JSON lines (one per image, then one for the model).
    #[arg(long)]
    pub json: bool,
    /// How a layer's heads are fused for rollout.
    #[arg(long, value_enum, default_value = "mean")]
    pub head_fusion: HeadFusion,
    /// Rollout: zero this fraction of each fused matrix's lowest entries (never the class
    /// token's own) before adding the identity.
    #[arg(long, default_value_t = 0.0)]
    pub discard_ratio: f64,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Pretrained weights, a file or a model id `hf-hub:ORG/NAME` (sets finetune.weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Force the weights' format: timm, hf-vit, hf-dinov2, jax (sets finetune.weights_format).
    #[arg(long)]
    pub weights_format: Option<String>,
    /// Classes of the new head (sets model.num_classes).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Fine-tuning resolution HxW or one number (sets model.image_size).
    #[arg(long)]
    pub image_size: Option<String>,
    /// Position-embedding resampling: timm, jax, hf, bilinear, nearest.
    #[arg(long)]
    pub posemb_resample: Option<String>,
    /// Train only the new head (a linear probe).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Data folder (sets data.root).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Peak learning rate (sets train.lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Images per optimiser step (sets train.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches accumulated per step (sets train.accum_steps).
    #[arg(long)]
    pub accum_steps: Option<usize>,
    /// Passes over the training set (sets train.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps (sets train.max_steps).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Warmup steps (sets train.warmup_steps).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
}

impl FinetuneArgs {
    /// The flags as `--set` overrides, after the user's own.
    pub fn overrides(&self) -> Result<Vec<String>, String> {
        let mut sets = self.train.recipe.sets.clone();
        let quote = |p: &std::path::Path| format!("{:?}", p.display().to_string());
        if let Some(w) = &self.weights {
            sets.push(format!("finetune.weights={}", quote(w)));
        }
        if let Some(f) = &self.weights_format {
            sets.push(format!("finetune.weights_format={f:?}"));
        }
        if let Some(m) = &self.posemb_resample {
            sets.push(format!("finetune.posemb_resample={m:?}"));
        }
        if self.freeze_backbone {
            sets.push("finetune.freeze_backbone=true".into());
        }
        if let Some(k) = self.num_classes {
            sets.push(format!("model.num_classes={k}"));
        }
        if let Some(size) = &self.image_size {
            let [h, w] = parse_size(size)?;
            sets.push(format!("model.image_size=[{h}, {w}]"));
        }
        if let Some(d) = &self.data {
            sets.push(format!("data.root={}", quote(d)));
        }
        for (key, value) in [
            ("train.batch_size", self.batch_size),
            ("train.accum_steps", self.accum_steps),
            ("train.epochs", self.epochs),
            ("train.max_steps", self.max_steps),
            ("train.warmup_steps", self.warmup_steps),
        ] {
            if let Some(v) = value {
                sets.push(format!("{key}={v}"));
            }
        }
        if let Some(lr) = self.lr {
            sets.push(format!("train.lr={lr:e}"));
        }
        Ok(sets)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Checkpoint folder (or a run folder: its checkpoints/last).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output file (.safetensors); never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// `HxW` or one number for a square size.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let bad = || format!("image size `{s}`: expected HxW (e.g. 112x112) or one number");
    match s.split_once('x') {
        Some((h, w)) => Ok([
            h.trim().parse().map_err(|_| bad())?,
            w.trim().parse().map_err(|_| bad())?,
        ]),
        None => {
            let n = s.trim().parse().map_err(|_| bad())?;
            Ok([n, n])
        }
    }
}
