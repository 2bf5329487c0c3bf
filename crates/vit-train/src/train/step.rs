//! One optimiser step of a recipe: forward and backward over the batch's micro-batches
//! (gradient accumulation), global-norm clipping, the optimiser's update. The training loop and
//! the `fmnist-train` benchmark run this same function.

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use vit_model::Model;

use super::clip;
use super::optim::LayerDecay;
use crate::config::TrainSection;
use crate::data::loader::Batch;
use crate::eval::{images_tensor, soft_cross_entropy};

/// What one step measured.
pub struct StepOutput {
    /// The batch's mean loss (summed over micro-batches, each weighted 1 / accum_steps).
    pub loss: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Why a step stopped.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The loss of a micro-batch was NaN or infinite; no update was made.
    #[error("the loss became {0}")]
    NonFinite(f64),
    #[error(transparent)]
    Model(#[from] vit_model::VitError),
}

/// One step on `batch` (images `[B, C, H, W]` flattened, `shape` = `[C, H, W]`; soft targets
/// `[B, K]`) at learning rate `lr`, split into `t.accum_steps` micro-batches, on `device` (an
/// autodiff device). Returns the updated model.
#[allow(clippy::too_many_arguments)]
pub fn optimizer_step(
    model: Model,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    shape: [usize; 3],
    t: &TrainSection,
    lr: f64,
    layer_decay: Option<&LayerDecay>,
    device: &Device,
) -> Result<(Model, StepOutput), StepError> {
    let per = shape.iter().product::<usize>();
    let classes = batch.targets.len() / batch.len().max(1);
    let micro = batch.len() / t.accum_steps;
    let mut acc = GradientsAccumulator::new();
    let mut loss_sum = 0.0;
    for m in 0..t.accum_steps {
        let imgs = batch.images[m * micro * per..(m + 1) * micro * per].to_vec();
        let tg = batch.targets[m * micro * classes..(m + 1) * micro * classes].to_vec();
        let x = images_tensor(imgs, micro, shape, device);
        let y = Tensor::<2>::from_data(TensorData::new(tg, [micro, classes]), device);
        let logits = model.forward(x)?;
        let loss = soft_cross_entropy(logits, y) / t.accum_steps as f64;
        let value = f64::from(loss.clone().into_scalar::<f32>());
        if !value.is_finite() {
            return Err(StepError::NonFinite(value));
        }
        loss_sum += value;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        acc.accumulate(&model, grads);
    }
    let mut grads = acc.grads();
    let grad_norm = match t.clip_grad_norm {
        Some(max) => clip::clip_global_norm(&model, &mut grads, max),
        None => clip::global_norm(&model, &grads),
    };
    let model = match layer_decay {
        Some(decay) => optim.step(decay.at(lr), model, grads),
        None => optim.step(lr, model, grads),
    };
    Ok((
        model,
        StepOutput {
            loss: loss_sum,
            grad_norm,
        },
    ))
}
