//! Pretrained models by name, from the local Hugging Face cache: `hf-hub:ORG/NAME[@REVISION]`
//! (or `timm/NAME[@REVISION]`), resolved as `huggingface_hub` lays the cache out, to the
//! weights file, the architecture, the preprocessing and the class names the repo's
//! `config.json` gives (timm's, or HF transformers' ViT / DINOv2).
//!
//! The cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; a repo is `models--ORG--NAME/`, whose `refs/<revision>` holds a
//! commit hash (a 40-hex revision is a commit itself), and `snapshots/<commit>/` its files,
//! usually symlinks into `blobs/` (followed). Nothing is downloaded: a model that is not in the
//! cache is an error naming the path looked at and the command that fetches it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Pool, VitConfig};
use crate::error::VitError;
use crate::preprocessing::{CropMode, Interpolation, Preprocessing};
use crate::weights::WeightFormat;

/// A model id: a repo (`ORG/NAME`) and a revision (branch, tag or commit; default `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub repo: String,
    pub revision: String,
}

impl ModelId {
    /// `hf-hub:ORG/NAME[@REV]` or `timm/NAME[@REV]`; `None` for anything else (a path).
    pub fn parse(s: &str) -> Option<Result<Self, VitError>> {
        let rest = if let Some(r) = s.strip_prefix("hf-hub:") {
            r
        } else if s.starts_with("timm/") && !Path::new(s).exists() {
            s
        } else {
            return None;
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (rest, "main"),
        };
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        Some(match repo.split_once('/') {
            Some((org, name)) if valid(org) && valid(name) && !revision.is_empty() => Ok(Self {
                repo: repo.to_string(),
                revision: revision.to_string(),
            }),
            _ => Err(VitError::Hub(format!(
                "`{s}` is not a model id: expected hf-hub:ORG/NAME[@REVISION] or \
                 timm/NAME[@REVISION]"
            ))),
        })
    }

    /// The repo's folder name in the cache (`models--ORG--NAME`, huggingface_hub's
    /// `repo_folder_name`).
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.revision == "main" {
            write!(f, "hf-hub:{}", self.repo)
        } else {
            write!(f, "hf-hub:{}@{}", self.repo, self.revision)
        }
    }
}

/// Whether `s` names a model of the hub rather than a file.
pub fn is_model_id(s: &str) -> bool {
    ModelId::parse(s).is_some()
}

fn env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The cache folder, as huggingface_hub finds it from the environment.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = env("HF_HUB_CACHE") {
        return p;
    }
    let home = env("HF_HOME").unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .unwrap_or_else(|| env("HOME").unwrap_or_default().join(".cache"))
            .join("huggingface")
    });
    home.join("hub")
}

/// Whether `HF_HUB_OFFLINE` is set to a true value (huggingface_hub's reading).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true"))
}

fn not_cached(id: &ModelId, looked: &Path, what: &str) -> VitError {
    let fetch = if id.revision == "main" {
        format!("hf download {}", id.repo)
    } else {
        format!("hf download {} --revision {}", id.repo, id.revision)
    };
    let mode = if offline() {
        " (HF_HUB_OFFLINE is set)"
    } else {
        ""
    };
    VitError::Hub(format!(
        "{id} is not in the Hugging Face cache{mode}: {what} {}; fetch it with `{fetch}` (or \
         `huggingface-cli download {}`), or point HF_HUB_CACHE / HF_HOME at the cache that \
         holds it",
        looked.display(),
        id.repo
    ))
}

/// The snapshot folder of `id` in `cache` and its commit.
pub fn snapshot(id: &ModelId, cache: &Path) -> Result<(PathBuf, String), VitError> {
    let repo = cache.join(id.folder());
    if !repo.is_dir() {
        return Err(not_cached(id, &repo, "no folder"));
    }
    let ref_file = repo.join("refs").join(&id.revision);
    let commit = if ref_file.is_file() {
        std::fs::read_to_string(&ref_file)
            .map_err(|e| VitError::Hub(format!("cannot read {}: {e}", ref_file.display())))?
            .trim()
            .to_string()
    } else if id.revision.len() == 40 && id.revision.chars().all(|c| c.is_ascii_hexdigit()) {
        id.revision.clone()
    } else {
        return Err(not_cached(id, &ref_file, "no revision file"));
    };
    let dir = repo.join("snapshots").join(&commit);
    if !dir.is_dir() {
        return Err(not_cached(id, &dir, "no snapshot"));
    }
    Ok((dir, commit))
}

/// A file of a snapshot (its path in the snapshot, as huggingface_hub returns it: the name
/// tells the format; reads follow the link into `blobs/`); `None` when the snapshot has no
/// such file, an error naming the path when its link is broken.
fn snapshot_file(id: &ModelId, dir: &Path, name: &str) -> Result<Option<PathBuf>, VitError> {
    let p = dir.join(name);
    match std::fs::symlink_metadata(&p) {
        Err(_) => Ok(None),
        Ok(_) => match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(Some(p)),
            _ => Err(VitError::Hub(format!(
                "{id}: {} is a broken link (its blob is missing); fetch the model again with \
                 `hf download {}`",
                p.display(),
                id.repo
            ))),
        },
    }
}

/// What a model id resolves to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The id, as given.
    pub id: ModelId,
    /// The snapshot's commit.
    pub commit: String,
    /// `model.safetensors`, else `pytorch_model.bin`, of the snapshot (the snapshot's path;
    /// usually a link into `blobs/`).
    pub weights: PathBuf,
    /// The format of the weights (timm, or HF's layout).
    pub format: WeightFormat,
    /// The architecture: the preset with the config's `model_args` applied (timm), or the HF
    /// config's.
    pub config: VitConfig,
    /// The timm architecture name, or `hf:<model_type>`.
    pub architecture: String,
    /// The evaluation preprocessing (`pretrained_cfg`, or HF's `preprocessor_config.json`).
    pub preprocessing: Preprocessing,
    /// Class names by index (`label_names`, or HF's `id2label`).
    pub labels: Option<Vec<String>>,
}

fn bad(id: &ModelId, path: &Path, msg: impl std::fmt::Display) -> VitError {
    VitError::Hub(format!("{id}: {}: {msg}", path.display()))
}

/// Resolves `id` in the cache the environment names ([`cache_dir`]).
pub fn resolve(id: &str) -> Result<Resolved, VitError> {
    resolve_in(id, &cache_dir())
}

/// Resolves `id` in `cache`.
pub fn resolve_in(id: &str, cache: &Path) -> Result<Resolved, VitError> {
    let id = ModelId::parse(id).unwrap_or_else(|| {
        Err(VitError::Hub(format!(
            "`{id}` is not a model id: expected hf-hub:ORG/NAME[@REVISION] or timm/NAME[@REVISION]"
        )))
    })?;
    let (dir, commit) = snapshot(&id, cache)?;
    let config_path = dir.join("config.json");
    let config_file = snapshot_file(&id, &dir, "config.json")?
        .ok_or_else(|| not_cached(&id, &config_path, "no file"))?;
    let text = std::fs::read_to_string(&config_file).map_err(|e| bad(&id, &config_path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(&id, &config_path, e))?;
    let weights = match snapshot_file(&id, &dir, "model.safetensors")? {
        Some(p) => p,
        None => snapshot_file(&id, &dir, "pytorch_model.bin")?.ok_or_else(|| {
            not_cached(
                &id,
                &dir.join("model.safetensors"),
                "no weights (nor pytorch_model.bin) beside",
            )
        })?,
    };
    let parsed = if json.get("model_type").is_some() {
        hf_config(&json, &dir, &id)
    } else {
        timm_config(&json)
    }
    .map_err(|e| bad(&id, &config_path, e))?;
    Ok(Resolved {
        id,
        commit,
        weights,
        format: parsed.format,
        config: parsed.config,
        architecture: parsed.architecture,
        preprocessing: parsed.preprocessing,
        labels: parsed.labels,
    })
}

struct Parsed {
    format: WeightFormat,
    config: VitConfig,
    architecture: String,
    preprocessing: Preprocessing,
    labels: Option<Vec<String>>,
}

/// Label names as timm stores them: a list, or an `{index: name}` object.
fn labels(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("label {x} is not a string"))
            })
            .collect(),
        Value::Object(o) => {
            let mut pairs: Vec<(usize, String)> = o
                .iter()
                .map(|(k, x)| {
                    let i = k
                        .parse::<usize>()
                        .map_err(|_| format!("label index `{k}` is not a number"))?;
                    let name = x
                        .as_str()
                        .ok_or_else(|| format!("label {x} is not a string"))?;
                    Ok((i, name.to_string()))
                })
                .collect::<Result<_, String>>()?;
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
                return Err("label indices are not 0..n".into());
            }
            Ok(pairs.into_iter().map(|p| p.1).collect())
        }
        other => Err(format!("labels {other} are neither a list nor an object")),
    }
}

fn usize_of(v: &Value, key: &str) -> Result<usize, String> {
    v.as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| format!("`{key}` = {v}: expected a whole number"))
}

fn f64_of(v: &Value, key: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("`{key}` = {v}: expected a number"))
}

fn bool_of(v: &Value, key: &str) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("`{key}` = {v}: expected true or false"))
}

/// `img_size` / `patch_size`: one number or `[h, w]`.
fn pair(v: &Value, key: &str) -> Result<[usize; 2], String> {
    match v {
        Value::Array(a) if a.len() == 2 => Ok([usize_of(&a[0], key)?, usize_of(&a[1], key)?]),
        Value::Array(a) if a.len() == 3 => Ok([usize_of(&a[1], key)?, usize_of(&a[2], key)?]),
        _ => {
            let n = usize_of(v, key)?;
            Ok([n, n])
        }
    }
}

fn f32s(v: &Value, key: &str) -> Result<Vec<f32>, String> {
    v.as_array()
        .ok_or_else(|| format!("`{key}` = {v}: expected a list of numbers"))?
        .iter()
        .map(|x| f64_of(x, key).map(|f| f as f32))
        .collect()
}

/// timm's `global_pool` names.
fn pool(v: &Value) -> Result<Pool, String> {
    match v.as_str() {
        Some("token") => Ok(Pool::Token),
        Some("avg") => Ok(Pool::Mean),
        _ => Err(format!(
            "`global_pool` = {v}: this ViT has token and avg pooling only"
        )),
    }
}

/// A timm `config.json` (`save_config_for_hf`'s, or the legacy single dict): the preset of
/// `architecture` with `model_args` applied, `pretrained_cfg`'s preprocessing, `label_names`
/// (top level or in `pretrained_cfg`, as timm's `_parse_model_cfg` reads them).
fn timm_config(json: &Value) -> Result<Parsed, String> {
    let root = json.as_object().ok_or("not a JSON object")?;
    let architecture = root
        .get("architecture")
        .and_then(Value::as_str)
        .ok_or("no `architecture` (not a timm config.json)")?
        .to_string();
    // Legacy configs are one dict: the pretrained config itself.
    let cfg = root
        .get("pretrained_cfg")
        .and_then(Value::as_object)
        .unwrap_or(root);
    let mut config = VitConfig::preset(&architecture).map_err(|e| {
        format!(
            "architecture `{architecture}` is not a preset of this crate ({e}); the presets are \
             `vit-train models`"
        )
    })?;
    if let Some(input) = cfg.get("input_size") {
        config.image_size = pair(input, "pretrained_cfg.input_size")?;
        if let Some(c) = input.as_array().and_then(|a| a.first()) {
            config.in_channels = usize_of(c, "pretrained_cfg.input_size")?;
        }
    }
    for (key, v) in [
        ("num_classes", root.get("num_classes")),
        ("global_pool", root.get("global_pool")),
    ] {
        match (key, v) {
            ("num_classes", Some(v)) => config.num_classes = usize_of(v, key)?,
            ("global_pool", Some(v)) => config.pool = pool(v)?,
            _ => {}
        }
    }
    if let Some(args) = root.get("model_args").and_then(Value::as_object) {
        for (k, v) in args {
            match k.as_str() {
                "img_size" => config.image_size = pair(v, k)?,
                "patch_size" => config.patch_size = pair(v, k)?,
                "in_chans" => config.in_channels = usize_of(v, k)?,
                "num_classes" => config.num_classes = usize_of(v, k)?,
                "embed_dim" => config.embed_dim = usize_of(v, k)?,
                "depth" => config.depth = usize_of(v, k)?,
                "num_heads" => config.num_heads = usize_of(v, k)?,
                "mlp_ratio" => {
                    config.mlp_ratio = f64_of(v, k)?;
                    config.mlp_dim = None;
                }
                "qkv_bias" => config.qkv_bias = bool_of(v, k)?,
                "class_token" => config.class_token = bool_of(v, k)?,
                "global_pool" => config.pool = pool(v)?,
                "fc_norm" => {
                    config.fc_norm = if v.is_null() {
                        None
                    } else {
                        Some(bool_of(v, k)?)
                    }
                }
                "init_values" => {
                    config.layer_scale_init = if v.is_null() {
                        None
                    } else {
                        Some(f64_of(v, k)?)
                    }
                }
                "drop_rate" | "proj_drop_rate" => config.drop_rate = f64_of(v, k)?,
                "attn_drop_rate" => config.attn_drop_rate = f64_of(v, k)?,
                "drop_path_rate" => config.drop_path_rate = f64_of(v, k)?,
                // Build-time options that do not change the weights or the outputs here.
                "dynamic_img_size" | "dynamic_img_pad" | "weight_init" | "fix_init" => {}
                other => {
                    return Err(format!(
                        "`model_args.{other}` is a timm option this ViT does not have"
                    ));
                }
            }
        }
    }
    // timm's resolve_data_config: what the pretrained config leaves out is timm's default
    // (ImageNet mean / std, crop_pct 0.875, center, bicubic).
    let preprocessing = Preprocessing {
        mean: match cfg.get("mean").filter(|v| !v.is_null()) {
            Some(v) => f32s(v, "pretrained_cfg.mean")?,
            None => crate::preprocessing::IMAGENET_MEAN.to_vec(),
        },
        std: match cfg.get("std").filter(|v| !v.is_null()) {
            Some(v) => f32s(v, "pretrained_cfg.std")?,
            None => crate::preprocessing::IMAGENET_STD.to_vec(),
        },
        crop_pct: match cfg.get("crop_pct") {
            Some(v) if !v.is_null() => f64_of(v, "pretrained_cfg.crop_pct")?,
            _ => crate::preprocessing::DEFAULT_CROP_PCT,
        },
        crop_mode: match cfg.get("crop_mode").and_then(Value::as_str) {
            Some(m) => m.parse::<CropMode>()?,
            None => CropMode::Center,
        },
        interpolation: match cfg.get("interpolation").and_then(Value::as_str) {
            // timm's `random` is a training-time choice; evaluation takes bilinear for it.
            Some("random") => Interpolation::Bilinear,
            Some(m) => m.parse::<Interpolation>()?,
            None => Interpolation::Bicubic,
        },
    };
    let labels = match root.get("label_names").or_else(|| cfg.get("label_names")) {
        Some(v) => Some(labels(v)?),
        None => None,
    };
    Ok(Parsed {
        format: WeightFormat::Timm,
        config,
        architecture,
        preprocessing,
        labels,
    })
}

/// An HF transformers `config.json` (`model_type` `vit` or `dinov2`), with the repo's
/// `preprocessor_config.json` where there is one (HF's `ViTImageProcessor` /
/// `BitImageProcessor` fields) and `id2label`.
fn hf_config(json: &Value, dir: &Path, id: &ModelId) -> Result<Parsed, String> {
    let get = |k: &str| json.get(k).filter(|v| !v.is_null());
    let model_type = get("model_type").and_then(Value::as_str).unwrap_or("");
    let format = match model_type {
        "vit" => WeightFormat::HfVit,
        "dinov2" => WeightFormat::HfDinov2,
        other => {
            return Err(format!(
                "model_type `{other}`: only HF `vit` and `dinov2` repos are read"
            ));
        }
    };
    if get("use_swiglu_ffn").and_then(Value::as_bool) == Some(true) {
        return Err("use_swiglu_ffn: SwiGLU MLPs are not supported".into());
    }
    let num = |k: &str, default: usize| get(k).map_or(Ok(default), |v| usize_of(v, k));
    let embed_dim = num("hidden_size", 768)?;
    let mut config = VitConfig::new()
        .with_image_size(get("image_size").map_or(Ok([224, 224]), |v| pair(v, "image_size"))?)
        .with_patch_size(get("patch_size").map_or(Ok([16, 16]), |v| pair(v, "patch_size"))?)
        .with_in_channels(num("num_channels", 3)?)
        .with_embed_dim(embed_dim)
        .with_depth(num("num_hidden_layers", 12)?)
        .with_num_heads(num("num_attention_heads", 12)?)
        .with_qkv_bias(get("qkv_bias").and_then(Value::as_bool).unwrap_or(true));
    config = match (get("intermediate_size"), get("mlp_ratio")) {
        (Some(v), _) => config.with_mlp_dim(Some(usize_of(v, "intermediate_size")?)),
        (None, Some(r)) => config.with_mlp_ratio(f64_of(r, "mlp_ratio")?),
        (None, None) => config,
    };
    if let Some(e) = get("layer_norm_eps") {
        config.norm_eps = f64_of(e, "layer_norm_eps")?;
    }
    let labels = match get("id2label") {
        Some(v) => Some(labels(v)?),
        None => None,
    };
    let classifier = get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter().any(|x| {
                x.as_str()
                    .is_some_and(|s| s.ends_with("ForImageClassification"))
            })
        });
    config.num_classes = if classifier {
        labels.as_ref().map_or(0, Vec::len)
    } else {
        0
    };
    let mut preprocessing = if format == WeightFormat::HfDinov2 {
        Preprocessing {
            mean: crate::preprocessing::IMAGENET_MEAN.to_vec(),
            std: crate::preprocessing::IMAGENET_STD.to_vec(),
            crop_pct: 0.875,
            crop_mode: CropMode::Center,
            interpolation: Interpolation::Bicubic,
        }
    } else {
        // ViTImageProcessor's defaults: both sides to the size, bilinear, mean / std 0.5.
        Preprocessing {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            crop_pct: 1.0,
            crop_mode: CropMode::Squash,
            interpolation: Interpolation::Bilinear,
        }
    };
    if let Some(p) =
        snapshot_file(id, dir, "preprocessor_config.json").map_err(|e| e.to_string())?
    {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let pp: Value =
            serde_json::from_str(&text).map_err(|e| format!("preprocessor_config.json: {e}"))?;
        hf_preprocessing(&pp, &mut preprocessing, &mut config)
            .map_err(|e| format!("preprocessor_config.json: {e}"))?;
    }
    Ok(Parsed {
        format,
        config,
        architecture: format!("hf:{model_type}"),
        preprocessing,
        labels,
    })
}

/// An HF image processor's fields as timm's preprocessing: `image_mean` / `image_std`,
/// `resample` (PIL's numbering: 2 bilinear, 3 bicubic, ...), `size` (`{height, width}`: both
/// sides, timm's `squash`; `{shortest_edge}`: the short side) and `crop_size` with
/// `do_center_crop` (crop_pct = crop / shortest edge).
fn hf_preprocessing(
    pp: &Value,
    p: &mut Preprocessing,
    config: &mut VitConfig,
) -> Result<(), String> {
    let get = |k: &str| pp.get(k).filter(|v| !v.is_null());
    if let Some(v) = get("image_mean") {
        p.mean = f32s(v, "image_mean")?;
    }
    if let Some(v) = get("image_std") {
        p.std = f32s(v, "image_std")?;
    }
    if let Some(v) = get("resample") {
        p.interpolation = match usize_of(v, "resample")? {
            1 => Interpolation::Lanczos,
            2 => Interpolation::Bilinear,
            3 => Interpolation::Bicubic,
            4 => Interpolation::Box,
            5 => Interpolation::Hamming,
            other => return Err(format!("resample = {other}: not an antialiased PIL filter")),
        };
    }
    let size = get("size");
    let crop =
        get("crop_size").filter(|_| get("do_center_crop").and_then(Value::as_bool) == Some(true));
    let hw = |v: &Value, k: &str| -> Result<Option<[usize; 2]>, String> {
        match (v.get("height"), v.get("width")) {
            (Some(h), Some(w)) => Ok(Some([usize_of(h, k)?, usize_of(w, k)?])),
            _ => Ok(None),
        }
    };
    match (size, crop) {
        (Some(s), Some(c)) => {
            let crop = hw(c, "crop_size")?.ok_or("crop_size: expected height and width")?;
            let short = match s.get("shortest_edge") {
                Some(e) => usize_of(e, "size.shortest_edge")?,
                None => {
                    hw(s, "size")?.ok_or("size: expected shortest_edge or height and width")?[0]
                }
            };
            config.image_size = crop;
            p.crop_mode = CropMode::Center;
            p.crop_pct = crop[0] as f64 / short as f64;
        }
        (Some(s), None) => {
            if let Some(size) = hw(s, "size")? {
                config.image_size = size;
                p.crop_mode = CropMode::Squash;
                p.crop_pct = 1.0;
            } else if let Some(e) = s.get("shortest_edge") {
                let e = usize_of(e, "size.shortest_edge")?;
                config.image_size = [e, e];
                p.crop_mode = CropMode::Center;
                p.crop_pct = 1.0;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every model of `cache` (each repo's `main`, else its first ref) and what it resolves to.
pub fn cached_models(cache: &Path) -> Vec<(String, Result<Resolved, VitError>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache) else {
        return out;
    };
    let mut repos: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_prefix("models--").map(|r| r.replacen("--", "/", 1)))
        .collect();
    repos.sort();
    for repo in repos {
        let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
        let mut refs: Vec<String> = std::fs::read_dir(folder.join("refs"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        refs.sort();
        let revision = if refs.iter().any(|r| r == "main") {
            "main".to_string()
        } else {
            match refs.first() {
                Some(r) => r.clone(),
                None => continue,
            }
        };
        let id = if revision == "main" {
            format!("hf-hub:{repo}")
        } else {
            format!("hf-hub:{repo}@{revision}")
        };
        let resolved = resolve_in(&id, cache);
        out.push((id, resolved));
    }
    out
}

/// The weights file a `--weights` value names: a model id's (resolved in the cache the
/// environment names), or the path itself.
pub fn weights_path(weights: &Path) -> Result<(PathBuf, Option<Resolved>), VitError> {
    match weights.to_str().filter(|s| is_model_id(s)) {
        Some(id) => {
            let r = resolve(id)?;
            Ok((r.weights.clone(), Some(r)))
        }
        None => Ok((weights.to_path_buf(), None)),
    }
}
