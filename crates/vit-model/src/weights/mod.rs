//! Weights in and out, in timm's key names and layouts.
//!
//! A checkpoint is first read into a [`StateDict`] (timm names, PyTorch layouts: Linear
//! weights `[out, in]`), whatever format it came in; then [`load_state_dict`] applies it to
//! the model by name, all or nothing. Foreign formats translate into timm names at this edge,
//! as timm's own `checkpoint_filter_fn` does, so the model never knows where weights came from.

mod safetensors;
mod state_dict;

pub use safetensors::{load_safetensors, read_safetensors, save_safetensors, write_safetensors};
pub use state_dict::{StateDict, load_state_dict, param_ids, set_param_ids, state_dict};
