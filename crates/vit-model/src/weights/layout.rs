//! Host-side layout changes used when translating foreign checkpoints into timm's layout.

use burn::tensor::TensorData;

fn values(t: &TensorData) -> Vec<f32> {
    t.clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// The same values under another shape with as many elements.
pub fn reshape(t: TensorData, shape: Vec<usize>) -> TensorData {
    debug_assert_eq!(t.num_elements(), shape.iter().product::<usize>());
    TensorData::new(values(&t), shape)
}

/// Axes reordered: output axis `i` is input axis `axes[i]` (numpy's `transpose(axes)`).
pub fn permute(t: &TensorData, axes: &[usize]) -> TensorData {
    let shape = t.shape().to_vec();
    let src = values(t);
    let rank = shape.len();
    let new_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let mut out = Vec::with_capacity(src.len());
    let mut index = vec![0usize; rank];
    for _ in 0..src.len() {
        let offset: usize = (0..rank).map(|i| index[i] * strides[axes[i]]).sum();
        out.push(src[offset]);
        // Odometer over the output shape.
        for i in (0..rank).rev() {
            index[i] += 1;
            if index[i] < new_shape[i] {
                break;
            }
            index[i] = 0;
        }
    }
    TensorData::new(out, new_shape)
}

/// A 2-D matrix transposed.
pub fn transpose(t: &TensorData) -> TensorData {
    permute(t, &[1, 0])
}

/// Tensors joined along their first axis (their other axes must agree).
pub fn cat0(parts: &[TensorData]) -> TensorData {
    let mut shape = parts[0].shape().to_vec();
    shape[0] = parts.iter().map(|p| p.shape()[0]).sum();
    let out: Vec<f32> = parts.iter().flat_map(values).collect();
    TensorData::new(out, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_matches_numpy() {
        // np.arange(24).reshape(2, 3, 4).transpose(2, 0, 1)[1, 1, 2] == 21
        let t = TensorData::new((0..24).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 4]);
        let p = permute(&t, &[2, 0, 1]);
        assert_eq!(p.shape().to_vec(), vec![4, 2, 3]);
        let v = p.try_into_vec::<f32>().unwrap();
        assert_eq!(v[6 + 3 + 2], 21.0);
        assert_eq!(&v[..6], &[0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
    }
}
