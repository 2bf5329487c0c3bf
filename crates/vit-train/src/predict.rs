//! `predict`: class probabilities of image files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::activation::softmax;
use serde::Serialize;
use vit_model::device_from_name;

use crate::cli::PredictArgs;
use crate::data::image_folder::decode;
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
}

/// Classifies each image with the checkpoint's model.
pub fn predict(args: &PredictArgs) -> Result<Vec<Prediction>> {
    let dir = checkpoint::resolve(&args.checkpoint)?;
    let state = checkpoint::read_state(&dir)?;
    let device_name = args
        .device
        .clone()
        .unwrap_or(state.config.train.device.clone());
    let device = device_from_name(&device_name)?;
    let model = checkpoint::load_for_inference(&dir, &state, &device)?;
    let model = model.valid();
    let c = &model.config;
    let shape = [c.in_channels, c.image_size[0], c.image_size[1]];
    let classes = match &state.config.data.classes {
        Some(names) => names.clone(),
        None => (0..c.num_classes).map(|i| i.to_string()).collect(),
    };
    let transform = Transform::evaluation(&state.config.data);
    let mut out = Vec::new();
    for path in &args.images {
        let px =
            decode(path, shape[0], c.image_size).with_context(|| format!("{}", path.display()))?;
        let x = images_tensor(transform.eval(&px, shape), 1, shape, &device);
        let probs = softmax(model.forward(x)?, 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
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
        });
    }
    Ok(out)
}
