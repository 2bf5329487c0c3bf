//! `predict`: class probabilities of image files, with a checkpoint of a run or with
//! pretrained weights (timm's evaluation transform); the model loading `eval --weights` and
//! `inspect` share.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::Serialize;
use vit_model::{
    CropMode, Interpolation, Model, ModelConfig, Preprocessing, PretrainedOptions,
    device_from_name, load_pretrained_model,
};

use crate::cli::{ModelArgs, PredictArgs, parse_size};
use crate::config::{Decoder, ModelSection, OnBadImage};
use crate::data::Source;
use crate::data::transforms::Transform;
use crate::eval::images_tensor;
use crate::train::checkpoint;

/// One class of a prediction.
#[derive(Debug, Serialize)]
pub struct Scored {
    pub index: usize,
    pub label: String,
    pub prob: f64,
}

/// The prediction for one image.
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub top_k: Vec<Scored>,
    /// Every class's logit, in class order (with `--logits`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

/// A model ready to run on image files: the network, its class names, and the evaluation
/// transform its inputs get (the run's, or timm's for pretrained weights).
pub struct Loaded {
    pub model: Model,
    pub classes: Vec<String>,
    pub transform: Transform,
    /// The model's input, `[c, h, w]`.
    pub shape: [usize; 3],
    pub device: Device,
}

impl Loaded {
    /// One image file as the model's normalised input `[1, C, H, W]`.
    pub fn prepare(&self, path: &Path) -> Result<Tensor<4>> {
        let px = self.transform.eval(Source::File(path), self.shape)?;
        Ok(images_tensor(px, 1, self.shape, &self.device))
    }
}

/// The model of a checkpoint or of pretrained weights, its class names and its evaluation
/// transform.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    match (&args.checkpoint, &args.weights) {
        (Some(dir), _) => from_checkpoint(dir, args),
        (None, Some(weights)) => from_weights(weights, args),
        (None, None) => bail!("give --checkpoint DIR or --weights FILE --model PRESET"),
    }
}

/// Classifies each image with the checkpoint's model or the pretrained weights.
pub fn predict(args: &PredictArgs) -> Result<Vec<Prediction>> {
    let loaded = load(&args.source)?;
    let classes = match &args.labels {
        Some(path) => read_labels(path)?,
        None => loaded.classes.clone(),
    };
    let mut out = Vec::new();
    for path in &args.images {
        let x = loaded.prepare(path)?;
        let logits = loaded.model.forward(x)?;
        let probs = softmax(logits.clone(), 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let logits = if args.logits {
            Some(logits.into_data().convert::<f32>().try_into_vec::<f32>()?)
        } else {
            None
        };
        out.push(Prediction {
            path: path.clone(),
            top_k: order
                .into_iter()
                .take(args.top_k)
                .map(|i| Scored {
                    index: i,
                    label: classes.get(i).cloned().unwrap_or_else(|| i.to_string()),
                    prob: f64::from(probs[i]),
                })
                .collect(),
            logits,
        });
    }
    Ok(out)
}

/// Class names from a file, one per line in class order.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels file {}", path.display()))?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// A run's checkpoint: its model, class names and evaluation transform (the run's; a run
/// on fixed-size images resizes a file of another size to the model's, both sides).
fn from_checkpoint(dir: &Path, args: &ModelArgs) -> Result<Loaded> {
    let dir = checkpoint::resolve(dir)?;
    let state = checkpoint::read_state(&dir)?;
    let device_name = args
        .device
        .clone()
        .unwrap_or(state.config.train.device.clone());
    let device = device_from_name(&device_name)?;
    let model = checkpoint::load_for_inference(&dir, &state, &device)?.valid();
    let c = model.config();
    let data = &state.config.data;
    let classes = match &data.classes {
        Some(names) => names.clone(),
        None => (0..c.num_classes()).map(|i| i.to_string()).collect(),
    };
    let mut transform = Transform::evaluation(data);
    if !data.format.is_encoded() {
        transform.eval = Preprocessing {
            crop_pct: 1.0,
            crop_mode: CropMode::Squash,
            interpolation: Interpolation::Bilinear,
            ..transform.eval
        };
    }
    override_preprocessing(&mut transform, args)?;
    let [h, w] = c.image_size();
    Ok(Loaded {
        shape: [c.in_channels(), h, w],
        model,
        classes,
        transform,
        device,
    })
}

/// `--crop-pct`, `--crop-mode`, `--interpolation`, `--decoder` over a transform.
pub fn override_preprocessing(t: &mut Transform, args: &ModelArgs) -> Result<()> {
    if let Some(p) = args.crop_pct {
        if !(p > 0.0 && p <= 1.0) {
            bail!("--crop-pct must be in (0, 1], got {p}");
        }
        t.eval.crop_pct = p;
    }
    if let Some(m) = args.crop_mode {
        t.eval.crop_mode = m;
    }
    if let Some(i) = args.interpolation {
        t.eval.interpolation = i;
    }
    if let Some(d) = args.decoder {
        let d = Decoder::from(d);
        d.resolve()?;
        t.decoder = d;
    }
    Ok(())
}

/// Pretrained weights on a preset, with timm's evaluation transform: the preset's timm config
/// (mean, std, crop_pct, crop_mode, interpolation), each overridable by its flag.
fn from_weights(weights: &Path, args: &ModelArgs) -> Result<Loaded> {
    let hub = match weights.to_str().filter(|s| vit_model::hub::is_model_id(s)) {
        Some(id) => Some(vit_model::hub::resolve(id)?),
        None => None,
    };
    let (mut config, preprocessing, labels, file) = match (&hub, args.model.as_deref()) {
        (_, Some(model)) => {
            let (c, p) = model_config(model)?;
            let labels = hub.as_ref().and_then(|r| r.labels.clone());
            let p = hub.as_ref().map_or(p, |r| r.preprocessing.clone());
            let file = hub
                .as_ref()
                .map_or(weights.to_path_buf(), |r| r.weights.clone());
            (c, p, labels, file)
        }
        (Some(r), None) => (
            ModelConfig::Vit(r.config.clone()),
            r.preprocessing.clone(),
            r.labels.clone(),
            r.weights.clone(),
        ),
        (None, None) => bail!(
            "--weights {} needs --model PRESET (or name a model in the Hugging Face cache: \
             --weights hf-hub:ORG/NAME)",
            weights.display()
        ),
    };
    let weights = file.as_path();
    if let Some(size) = &args.image_size {
        config = config.with_image_size(parse_size(size).map_err(anyhow::Error::msg)?);
    }
    let options = PretrainedOptions {
        format: args.weights_format.or(hub.as_ref().map(|r| r.format)),
        resample: args.posemb_resample,
        new_head: None,
    };
    let device = device_from_name(args.device.as_deref().unwrap_or("cpu"))?;
    let model = load_pretrained_model(&config, weights, &options, &device)?.valid();
    let c = model.config();
    let channels = c.in_channels();
    let mut p = preprocessing;
    if let Some(m) = &args.mean {
        p.mean = m.clone();
    }
    if let Some(s) = &args.std {
        p.std = s.clone();
    }
    if p.mean.len() != channels || p.std.len() != channels {
        bail!(
            "--mean and --std need {channels} values (one per input channel), got {} and {}",
            p.mean.len(),
            p.std.len()
        );
    }
    let mut transform = Transform::from_preprocessing(&p, Decoder::Auto, OnBadImage::Error);
    override_preprocessing(&mut transform, args)?;
    let classes = match labels {
        Some(l) if l.len() == c.num_classes() => l,
        Some(l) => bail!(
            "the model's config names {} labels but its head has {} classes",
            l.len(),
            c.num_classes()
        ),
        None => (0..c.num_classes()).map(|i| i.to_string()).collect(),
    };
    let [h, w] = c.image_size();
    Ok(Loaded {
        classes,
        shape: [channels, h, w],
        model,
        transform,
        device,
    })
}

/// `--model`: a preset name, or a recipe (`.toml`) whose `[model]` section describes the
/// architecture; with the evaluation preprocessing of the preset's timm config (or of the
/// recipe's `[data]` keys).
fn model_config(model: &str) -> Result<(ModelConfig, Preprocessing)> {
    if !model.ends_with(".toml") {
        let config = ModelConfig::preset(model)?;
        return Ok((config, Preprocessing::for_preset(model)));
    }
    let text = std::fs::read_to_string(model).with_context(|| format!("cannot read {model}"))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{model} is not valid TOML"))?;
    let data = table.remove("data");
    let Some(toml::Value::Table(section)) = table.remove("model") else {
        bail!("{model} has no [model] table");
    };
    let section = ModelSection::from_table(section)
        .map_err(anyhow::Error::msg)
        .with_context(|| model.to_string())?;
    section
        .config
        .validate()
        .map_err(crate::config::rules::model_error)
        .with_context(|| model.to_string())?;
    // The preset's timm config, else the family's (a ViT's at 224 px, BiT's).
    let mut p = match (section.preset.as_deref(), &section.config) {
        (Some(preset), _) => Preprocessing::for_preset(preset),
        (None, ModelConfig::Bit(_)) => Preprocessing::bit(),
        (None, ModelConfig::Vit(_)) => Preprocessing::for_preset("default_224"),
    };
    // A recipe's [data] names its own normalisation and evaluation transform.
    if let Some(toml::Value::Table(d)) = data {
        let get = |k: &str| d.get(k).cloned();
        if let Some(v) = get("mean").and_then(|v| v.try_into::<Vec<f32>>().ok()) {
            p.mean = v;
        }
        if let Some(v) = get("std").and_then(|v| v.try_into::<Vec<f32>>().ok()) {
            p.std = v;
        }
        if let Some(v) = get("crop_pct").and_then(|v| v.try_into::<f64>().ok()) {
            p.crop_pct = v;
        }
        if let Some(v) = get("crop_mode").and_then(|v| v.try_into::<CropMode>().ok()) {
            p.crop_mode = v;
        }
        if let Some(v) = get("interpolation").and_then(|v| v.try_into::<Interpolation>().ok()) {
            p.interpolation = v;
        }
    }
    Ok((section.config, p))
}
