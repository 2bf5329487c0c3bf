//! Checkpoints: a folder with the model (timm-named safetensors, loadable by timm), the
//! parameter ids, the optimiser state and the loop state. Written to a temporary folder and
//! renamed into place, so a crash never leaves a half-written checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use vit_model::VisionTransformer;
use vit_model::weights::{load_safetensors, param_ids, save_safetensors, set_param_ids};

use crate::config::Config;

pub const MODEL_FILE: &str = "model.safetensors";
const IDS_FILE: &str = "param_ids.json";
const OPTIM_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// Where the loop stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
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

/// Writes a checkpoint folder at `dir` atomically (replacing an older checkpoint there).
pub fn save(
    dir: &Path,
    model: &VisionTransformer,
    optim: &ModuleOptimizer,
    state: &LoopState,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    save_safetensors(model, &tmp.join(MODEL_FILE))?;
    fs::write(
        tmp.join(IDS_FILE),
        serde_json::to_string(&param_ids(model))?,
    )?;
    optim
        .save(tmp.join(OPTIM_FILE))
        .map_err(|e| anyhow::anyhow!("cannot write optimizer state: {e:?}"))?;
    fs::write(tmp.join(STATE_FILE), serde_json::to_string_pretty(state)?)?;
    let old = dir.with_extension("old");
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        fs::rename(dir, &old)?;
    }
    fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move checkpoint to {}", dir.display()))?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Resolves `path` to a checkpoint folder: itself, or a run folder's `checkpoints/last`.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    for candidate in [path.to_path_buf(), path.join("checkpoints/last")] {
        if candidate.join(STATE_FILE).exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is not a checkpoint: no {STATE_FILE} in it or in its checkpoints/last",
        path.display()
    )
}

/// Reads a checkpoint's loop state (and so its recipe).
pub fn read_state(dir: &Path) -> Result<LoopState> {
    let path = dir.join(STATE_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid checkpoint state", path.display()))
}

/// Loads the checkpoint's weights (and parameter ids) into `model`; a model of another
/// architecture gets an error naming every mismatched key.
pub fn load_model(dir: &Path, model: VisionTransformer) -> Result<VisionTransformer> {
    let model = load_safetensors(model, &dir.join(MODEL_FILE))
        .with_context(|| format!("checkpoint {} does not fit this model", dir.display()))?;
    let ids_path = dir.join(IDS_FILE);
    if ids_path.exists() {
        let ids: BTreeMap<String, u64> = serde_json::from_str(&fs::read_to_string(&ids_path)?)?;
        return Ok(set_param_ids(model, ids));
    }
    Ok(model)
}

/// Loads the optimiser state into `optim`.
pub fn load_optimizer(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    optim
        .load(dir.join(OPTIM_FILE))
        .map_err(|e| anyhow::anyhow!("cannot read optimizer state in {}: {e:?}", dir.display()))
}

/// Builds the model of a checkpoint (folder `dir`, its state already read) on `device`, for
/// evaluation or prediction.
pub fn load_for_inference(
    dir: &Path,
    state: &LoopState,
    device: &Device,
) -> Result<VisionTransformer> {
    let config = state.config.model.vit_config()?;
    load_model(dir, config.try_init(device)?)
}
