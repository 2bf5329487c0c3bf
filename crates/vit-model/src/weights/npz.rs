//! NumPy `.npz` archives, as the original JAX ViT checkpoints (`ViT-B_16.npz`) are stored.

use std::path::Path;

use npyz::npz::NpzArchive;
use npyz::{DType, Order, TypeChar};

use super::StateDict;
use crate::error::VitError;

/// Reads every floating-point array of an `.npz` file as f32, under its array name
/// (`Transformer/encoderblock_0/LayerNorm_0/scale`, ...).
pub fn read_npz(path: &Path) -> Result<StateDict, VitError> {
    let error = |message: String| VitError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let mut archive =
        NpzArchive::open(path).map_err(|e| error(format!("not a readable .npz archive: {e}")))?;
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    let mut dict = StateDict::new();
    for name in names {
        let array = archive
            .by_name(&name)
            .map_err(|e| error(format!("array `{name}`: {e}")))?
            .ok_or_else(|| error(format!("array `{name}` listed but missing")))?;
        let shape: Vec<usize> = array.shape().iter().map(|&d| d as usize).collect();
        if array.order() == Order::Fortran {
            return Err(error(format!(
                "array `{name}` is in Fortran order; expected C order (np.savez's default)"
            )));
        }
        let type_str = match array.dtype() {
            DType::Plain(t) => t,
            other => {
                return Err(error(format!(
                    "array `{name}` has dtype {}; expected a float array",
                    other.descr()
                )));
            }
        };
        let read = |e: std::io::Error| error(format!("array `{name}`: {e}"));
        let values: Vec<f32> = match (type_str.type_char(), type_str.size_field()) {
            (TypeChar::Float, 4) => array.into_vec::<f32>().map_err(read)?,
            (TypeChar::Float, 8) => array
                .into_vec::<f64>()
                .map_err(read)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            // Integer arrays (step counters) are not weights.
            (TypeChar::Int | TypeChar::Uint | TypeChar::Bool, _) => continue,
            _ => {
                return Err(error(format!(
                    "array `{name}` has dtype {type_str}; expected float32 or float64"
                )));
            }
        };
        let tensor = super::checked_tensor(&name, values, shape).map_err(error)?;
        dict.insert(name, tensor);
    }
    Ok(dict)
}
