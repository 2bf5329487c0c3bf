//! Checkpoints: a folder with the model (timm-named safetensors, loadable by timm), the
//! parameter ids, the optimiser state and the loop state. Written to a temporary folder and
//! renamed into place, so a crash never leaves a half-written checkpoint: the folder is
//! either the new one or the previous one, and in the instant between the two renames (the
//! previous one moved to `NAME.old`, the new one not yet in place) [`resolve`] finds
//! `NAME.old`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use vit_model::Model;
use vit_model::weights::{load_safetensors, param_ids, save_safetensors, set_param_ids};

use crate::config::Config;

pub const MODEL_FILE: &str = "model.safetensors";
/// The moving average of the weights (`train.ema_decay`), same layout as [`MODEL_FILE`]; where
/// present it is the checkpoint's model for evaluation, prediction and export.
pub const EMA_FILE: &str = "ema.safetensors";
const IDS_FILE: &str = "param_ids.json";
const OPTIM_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// The checkpoint layout this build writes and reads (`state.json`'s `version`); states
/// written before the field existed are version 1.
pub const CHECKPOINT_VERSION: u32 = 1;

fn version_1() -> u32 {
    1
}

/// Where the loop stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
    /// The checkpoint layout ([`CHECKPOINT_VERSION`]).
    #[serde(default = "version_1")]
    pub version: u32,
    /// Optimiser steps done.
    pub step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already consumed.
    pub batch_in_epoch: usize,
    /// Best validation top-1 so far.
    pub best_top1: f64,
    /// The recipe of the run (model, data, schedule).
    pub config: Config,
}

/// Writes a checkpoint folder at `dir` atomically (replacing an older checkpoint there), with
/// the moving average of the weights where the run keeps one. A write that fails (a full
/// disk, an I/O error, permissions) is an error naming the file; the temporary folder is
/// removed and the previous checkpoint at `dir` stays as it was.
pub fn save(
    dir: &Path,
    model: &Model,
    ema: Option<&Model>,
    optim: &ModuleOptimizer,
    state: &LoopState,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    if let Err(e) = write_files(&tmp, model, ema, optim, state) {
        // Best effort: what is left of it is no checkpoint.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "cannot write checkpoint {}; the previous one there is unchanged",
            dir.display()
        )));
    }
    fault_point("written");
    let old = dir.with_extension("old");
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        }
        fs::rename(dir, &old).with_context(|| format!("cannot move {}", dir.display()))?;
    }
    fault_point("swapping");
    fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move checkpoint to {}", dir.display()))?;
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

/// The files of a checkpoint, into folder `tmp`; each error names its file.
fn write_files(
    tmp: &Path,
    model: &Model,
    ema: Option<&Model>,
    optim: &ModuleOptimizer,
    state: &LoopState,
) -> Result<()> {
    fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let path = tmp.join(MODEL_FILE);
    save_safetensors(model, &path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(ema) = ema {
        let path = tmp.join(EMA_FILE);
        save_safetensors(ema, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let path = tmp.join(IDS_FILE);
    fs::write(&path, serde_json::to_string(&param_ids(model))?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let path = tmp.join(OPTIM_FILE);
    optim
        .save(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", path.display()))?;
    let path = tmp.join(STATE_FILE);
    fs::write(&path, serde_json::to_string_pretty(state)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// For the tests of a crash while a checkpoint is written: with `VIT_TRAIN_FAULT=STAGE` the
/// process aborts at that stage of [`save`] (`written`: the new checkpoint is complete in
/// `NAME.tmp`; `swapping`: the previous one has been moved to `NAME.old`), as a SIGKILL there
/// would stop it.
fn fault_point(stage: &str) {
    if std::env::var_os("VIT_TRAIN_FAULT").is_some_and(|v| v == stage) {
        eprintln!("VIT_TRAIN_FAULT={stage}: aborting while writing a checkpoint");
        std::process::abort();
    }
}

/// Resolves `path` to a checkpoint folder: itself, or a run folder's `checkpoints/last`, or
/// (after a crash between a save's two renames) `checkpoints/last.old`.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    for candidate in [
        path.to_path_buf(),
        path.join("checkpoints/last"),
        path.join("checkpoints/last.old"),
    ] {
        if candidate.join(STATE_FILE).exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is not a checkpoint: no {STATE_FILE} in it or in its checkpoints/last",
        path.display()
    )
}

/// The run folder a checkpoint folder belongs to (`RUN/checkpoints/NAME` -> `RUN`), if it is
/// laid out that way.
pub fn run_folder(dir: &Path) -> Option<PathBuf> {
    let parent = dir.parent()?;
    (parent.file_name()? == "checkpoints").then(|| parent.parent().map(Path::to_path_buf))?
}

/// Reads a checkpoint's loop state (and so its recipe), checking its version and recipe.
pub fn read_state(dir: &Path) -> Result<LoopState> {
    let path = dir.join(STATE_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let state: LoopState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid checkpoint state", path.display()))?;
    if state.version != CHECKPOINT_VERSION {
        bail!(
            "{} is a checkpoint of layout version {}; this vit-train reads version \
             {CHECKPOINT_VERSION}",
            path.display(),
            state.version
        );
    }
    state
        .config
        .check()
        .with_context(|| format!("{} holds an invalid recipe", path.display()))?;
    Ok(state)
}

/// Loads the checkpoint's weights (and parameter ids) into `model`; a model of another
/// architecture gets an error naming every mismatched key.
pub fn load_model(dir: &Path, model: Model) -> Result<Model> {
    let path = dir.join(MODEL_FILE);
    let model = load_safetensors(model, &path)
        .with_context(|| format!("cannot load the model of checkpoint {}", dir.display()))?;
    let ids_path = dir.join(IDS_FILE);
    if ids_path.exists() {
        let text = fs::read_to_string(&ids_path)
            .with_context(|| format!("cannot read {}", ids_path.display()))?;
        let ids: BTreeMap<String, u64> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a parameter-id map", ids_path.display()))?;
        return Ok(set_param_ids(model, ids));
    }
    Ok(model)
}

/// Loads the checkpoint's moving average of the weights into `model` (for a resumed run whose
/// recipe keeps one).
pub fn load_ema(dir: &Path, model: Model) -> Result<Model> {
    let path = dir.join(EMA_FILE);
    if !path.is_file() {
        bail!(
            "{} is missing: the recipe sets train.ema_decay but the checkpoint has no average \
             of the weights to resume from",
            path.display()
        );
    }
    load_safetensors(model, &path).with_context(|| {
        format!(
            "cannot load the weight average of checkpoint {}",
            dir.display()
        )
    })
}

/// Loads the optimiser state into `optim`.
pub fn load_optimizer(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join(OPTIM_FILE);
    if !path.is_file() {
        bail!(
            "{} is missing: the checkpoint has no optimizer state to resume from",
            path.display()
        );
    }
    // Burn's record loading has `expect`s on what it reads: should one fire on a malformed
    // file, that is this file's error too.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optim.load(&path)));
    match loaded {
        Ok(Ok(optim)) => Ok(optim),
        Ok(Err(e)) => bail!("{}: cannot read the optimizer state: {e:?}", path.display()),
        Err(_) => bail!(
            "{}: cannot read the optimizer state: malformed record",
            path.display()
        ),
    }
}

/// Builds the model of a checkpoint (folder `dir`, its state already read) on `device`, for
/// evaluation, prediction or export: the moving average of the weights where the run kept one
/// (as timm evaluates its EMA model), else the trained weights.
pub fn load_for_inference(dir: &Path, state: &LoopState, device: &Device) -> Result<Model> {
    let config = &state.config.model.config;
    if state.config.train.ema_decay.is_some() {
        return load_ema(dir, config.try_init(device)?);
    }
    load_model(dir, config.try_init(device)?)
}
