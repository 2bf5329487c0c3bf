//! `predict`: class probabilities of image files, with a checkpoint of a run or with
//! pretrained weights (timm's evaluation transform).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use image::DynamicImage;
use image::imageops::FilterType;
use serde::Serialize;
use vit_model::{
    PretrainedOptions, VisionTransformer, VitConfig, device_from_name, load_pretrained,
};

use crate::cli::{ModelArgs, PredictArgs, parse_size};
use crate::config::{AugmentSection, ModelSection};
use crate::data::image_folder::{decode, open, to_chw};
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

/// Turns one image file into the model's normalised input `[1, C, H, W]`.
pub type Prepare = Box<dyn Fn(&Path) -> Result<Tensor<4>>>;

/// The model of a checkpoint or of pretrained weights, its class names and its evaluation
/// transform.
pub fn load(args: &ModelArgs) -> Result<(VisionTransformer, Vec<String>, Prepare)> {
    match (&args.checkpoint, &args.weights) {
        (Some(dir), _) => from_checkpoint(dir, args),
        (None, Some(weights)) => from_weights(weights, args),
        (None, None) => bail!("give --checkpoint DIR or --weights FILE --model PRESET"),
    }
}

/// Classifies each image with the checkpoint's model or the pretrained weights.
pub fn predict(args: &PredictArgs) -> Result<Vec<Prediction>> {
    let (model, classes, prepare) = load(&args.source)?;
    let classes = match &args.labels {
        Some(path) => read_labels(path)?,
        None => classes,
    };
    let mut out = Vec::new();
    for path in &args.images {
        let x = prepare(path).with_context(|| format!("{}", path.display()))?;
        let logits = model.forward(x)?;
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

fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels file {}", path.display()))?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// A run's checkpoint: its model, class names and evaluation transform.
fn from_checkpoint(
    dir: &Path,
    args: &ModelArgs,
) -> Result<(VisionTransformer, Vec<String>, Prepare)> {
    let dir = checkpoint::resolve(dir)?;
    let state = checkpoint::read_state(&dir)?;
    let device_name = args
        .device
        .clone()
        .unwrap_or(state.config.train.device.clone());
    let device = device_from_name(&device_name)?;
    let model = checkpoint::load_for_inference(&dir, &state, &device)?.valid();
    let c = model.config.clone();
    let classes = match &state.config.data.classes {
        Some(names) => names.clone(),
        None => (0..c.num_classes).map(|i| i.to_string()).collect(),
    };
    let transform = Transform::evaluation(&state.config.data);
    let shape = [c.in_channels, c.image_size[0], c.image_size[1]];
    let prepare: Prepare = Box::new(move |path| {
        let px = decode(path, shape[0], c.image_size)?;
        Ok(images_tensor(transform.eval(&px, shape), 1, shape, &device))
    });
    Ok((model, classes, prepare))
}

/// Pretrained weights on a preset, with timm's evaluation transform.
fn from_weights(
    weights: &Path,
    args: &ModelArgs,
) -> Result<(VisionTransformer, Vec<String>, Prepare)> {
    let model = args
        .model
        .as_deref()
        .context("--weights needs --model PRESET")?;
    let mut config = model_config(model)?;
    if let Some(size) = &args.image_size {
        config.image_size = parse_size(size).map_err(anyhow::Error::msg)?;
    }
    let options = PretrainedOptions {
        format: args.weights_format,
        resample: args.posemb_resample,
        new_head: None,
    };
    let device = device_from_name(args.device.as_deref().unwrap_or("cpu"))?;
    let model = load_pretrained(&config, weights, &options, &device)?.valid();
    let c = model.config.clone();
    let channels = c.in_channels;
    let mean = args.mean.clone().unwrap_or(vec![0.5; channels]);
    let std = args.std.clone().unwrap_or(vec![0.5; channels]);
    if mean.len() != channels || std.len() != channels {
        bail!(
            "--mean and --std need {channels} values (one per input channel), got {} and {}",
            mean.len(),
            std.len()
        );
    }
    if !(args.crop_pct > 0.0 && args.crop_pct <= 1.0) {
        bail!("--crop-pct must be in (0, 1], got {}", args.crop_pct);
    }
    let classes = (0..c.num_classes).map(|i| i.to_string()).collect();
    let crop_pct = args.crop_pct;
    // Pixels / 255, then (x - mean) / std: the same normalisation as a recipe's.
    let transform = Transform {
        augment: AugmentSection::default(),
        mean,
        std,
    };
    let shape = [channels, c.image_size[0], c.image_size[1]];
    let prepare: Prepare = Box::new(move |path| {
        let img = timm_eval_resize(open(path)?, c.image_size, crop_pct);
        let px = to_chw(&img, channels)?;
        Ok(images_tensor(transform.eval(&px, shape), 1, shape, &device))
    });
    Ok((model, classes, prepare))
}

/// `--model`: a preset name, or a recipe (`.toml`) whose `[model]` section describes the
/// architecture.
fn model_config(model: &str) -> Result<VitConfig> {
    if !model.ends_with(".toml") {
        return Ok(VitConfig::preset(model)?);
    }
    let text = std::fs::read_to_string(model).with_context(|| format!("cannot read {model}"))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{model} is not valid TOML"))?;
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
    Ok(section.config)
}

/// timm's evaluation transform (`transforms_factory`, crop_mode "center"): an image already
/// of the input size is used as is; otherwise it is resized with bicubic interpolation to
/// `floor(size / crop_pct)` (the short side, for a square size; both sides otherwise) and
/// centre-cropped to the input size.
pub fn timm_eval_resize(img: DynamicImage, size: [usize; 2], crop_pct: f64) -> DynamicImage {
    let [h, w] = size;
    let (ih, iw) = (img.height() as usize, img.width() as usize);
    if (ih, iw) == (h, w) {
        return img;
    }
    let sh = (h as f64 / crop_pct).floor() as usize;
    let sw = (w as f64 / crop_pct).floor() as usize;
    let (rh, rw) = if sh == sw {
        // torchvision Resize(int): the short side to `sh`, the long one in proportion.
        if ih <= iw {
            (sh, (sh * iw) / ih)
        } else {
            ((sh * ih) / iw, sh)
        }
    } else {
        (sh, sw)
    };
    let resized = img.resize_exact(rw as u32, rh as u32, FilterType::CatmullRom);
    // torchvision CenterCrop: offsets rounded.
    let top = ((rh as f64 - h as f64) / 2.0).round().max(0.0) as u32;
    let left = ((rw as f64 - w as f64) / 2.0).round().max(0.0) as u32;
    resized.crop_imm(left, top, w as u32, h as u32)
}
