//! PyTorch `.pth` / `.pt` / `.bin` checkpoints (`torch.save` of a state dict, zip or legacy
//! format), read without PyTorch through the `pytorch-reader` crate.

use std::path::Path;

use pytorch_reader::{DType, PytorchReader};

use super::StateDict;
use crate::error::VitError;

/// Reads every floating-point tensor of a PyTorch checkpoint as f32, under its dotted path
/// (`model.blocks.0.attn.qkv.weight` when the state dict is wrapped in `{"model": ...}`;
/// [`super::read_weights`] strips such wrappers). Integer tensors (step counters and the
/// like) are left out.
pub fn read_pytorch(path: &Path) -> Result<StateDict, VitError> {
    let error = |message: String| VitError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let reader = PytorchReader::new(path)
        .map_err(|e| error(format!("not a readable PyTorch checkpoint: {e}")))?;
    let mut dict = StateDict::new();
    for (name, tensor) in reader.into_tensors() {
        let dtype = tensor.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
            continue;
        }
        let shape = tensor.shape().to_vec();
        let bytes = tensor.read().map_err(|e| error(e.to_string()))?;
        // `read` gives native-endian bytes, row-major.
        let values: Vec<f32> = match dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        let tensor = super::checked_tensor(&name, values, shape).map_err(error)?;
        dict.insert(name, tensor);
    }
    if dict.is_empty() {
        return Err(error("holds no floating-point tensors".into()));
    }
    Ok(dict)
}
