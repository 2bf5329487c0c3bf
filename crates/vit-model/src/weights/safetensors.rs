//! safetensors files in timm's names and layouts (what `safetensors.torch.save_file(
//! model.state_dict())` writes).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::state_dict::{StateDict, TimmNamed, load_state_dict, state_dict};
use crate::error::VitError;

fn file_error(path: &Path, message: impl ToString) -> VitError {
    VitError::WeightsFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads every tensor of a safetensors file as f32 (f64, f16 and bf16 are converted).
pub fn read_safetensors(path: &Path) -> Result<StateDict, VitError> {
    let bytes = fs::read(path).map_err(|e| file_error(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_error(path, format!("not a valid safetensors file: {e}")))?;
    let mut dict = StateDict::new();
    for (name, view) in tensors.iter() {
        let raw = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(file_error(
                    path,
                    format!("tensor `{name}` has dtype {other:?}; expected F32, F64, F16 or BF16"),
                ));
            }
        };
        let tensor = super::checked_tensor(name, values, view.shape().to_vec())
            .map_err(|e| file_error(path, e))?;
        dict.insert(name.to_string(), tensor);
    }
    Ok(dict)
}

/// Writes a state dict as an f32 safetensors file. Refuses to overwrite an existing file;
/// writes to a temporary file first, then renames, so a failed write leaves nothing behind.
pub fn write_safetensors(dict: &StateDict, path: &Path) -> Result<(), VitError> {
    if path.exists() {
        return Err(file_error(path, "already exists; not overwriting it"));
    }
    let bytes: Vec<(&String, Vec<u8>, Vec<usize>)> = dict
        .iter()
        .map(|(k, v)| {
            let data = v.clone().convert::<f32>();
            (k, data.as_bytes().to_vec(), data.shape().to_vec())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, b, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (k.as_str(), v))
                .map_err(|e| file_error(path, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| file_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| file_error(path, e))
}

/// Loads a timm-named safetensors checkpoint into the model (see [`load_state_dict`]).
pub fn load_safetensors<M: TimmNamed>(model: M, path: &Path) -> Result<M, VitError> {
    let dict = read_safetensors(path)?;
    load_state_dict(model, dict).map_err(|e| file_error(path, e))
}

/// Saves the model as a timm-named safetensors checkpoint.
pub fn save_safetensors<M: TimmNamed>(model: &M, path: &Path) -> Result<(), VitError> {
    write_safetensors(&state_dict(model), path)
}
