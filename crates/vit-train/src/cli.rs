//! The `vit-train` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Evaluate a checkpoint: loss, top-1, top-5, per-class accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Classify image files with a checkpoint.
    Predict(PredictArgs),
    /// Show the model, data and schedule a recipe describes, without training.
    Info(RecipeArgs),
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
pub struct TrainArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Device: cpu (Flex), ndarray, wgpu, vulkan, metal, cuda[:N]. Overrides train.device.
    #[arg(long)]
    pub device: Option<String>,
    /// Continue the run of this checkpoint (or run folder) exactly where it stopped, with the
    /// recipe saved in it.
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Checkpoint folder (or a run folder: its checkpoints/last).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Split to evaluate: test, val or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Data folder, instead of the recipe's data.root.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub device: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Checkpoint folder (or a run folder).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// One JSON object per image and line.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub device: Option<String>,
}
