//! Weights in and out, in timm's key names and layouts.
//!
//! A checkpoint is first read into a [`StateDict`] (timm names, PyTorch layouts: Linear
//! weights `[out, in]`), whatever format it came in ([`read_weights`]: timm safetensors or
//! `.pth`, HF ViT / DINOv2, JAX `.npz`); then [`load_state_dict`] applies it to the model by
//! name, all or nothing. Foreign formats translate into timm names at this edge, as timm's
//! own `checkpoint_filter_fn` does, so the model never knows where weights came from.
//! [`load_pretrained`] does both and adapts the model to the checkpoint (head, grid).

mod bit_npz;
mod format;
mod hf;
mod jax;
mod layout;
mod npz;
mod pretrained;
mod pytorch;
mod safetensors;
mod state_dict;

pub use bit_npz::{bit_to_timm, read_bit_weights};
pub use format::{WeightFormat, read_container, read_weights};
pub use npz::read_npz;
pub use pretrained::{PretrainedOptions, load_pretrained};
pub use pytorch::read_pytorch;
pub use safetensors::{load_safetensors, read_safetensors, save_safetensors, write_safetensors};
pub use state_dict::{StateDict, TimmNamed, load_state_dict, param_ids, set_param_ids, state_dict};

/// A tensor read from a file: its values must fill its shape (a malformed file can say
/// otherwise); the error names the tensor.
fn checked_tensor(
    name: &str,
    values: Vec<f32>,
    shape: Vec<usize>,
) -> Result<burn::tensor::TensorData, String> {
    let want = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if want != Some(values.len()) {
        return Err(format!(
            "tensor `{name}` has shape {shape:?} but {} values",
            values.len()
        ));
    }
    Ok(burn::tensor::TensorData::new(values, shape))
}
