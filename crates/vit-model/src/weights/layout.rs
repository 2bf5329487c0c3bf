//! Host-side layout changes used when translating foreign checkpoints into timm's layout.

use burn::tensor::TensorData;

fn values(t: &TensorData) -> Result<Vec<f32>, String> {
    t.clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("cannot read as f32: {e:?}"))
}

/// The same values under another shape with as many elements.
pub fn reshape(t: TensorData, shape: Vec<usize>) -> Result<TensorData, String> {
    if t.num_elements() != shape.iter().product::<usize>() {
        return Err(format!(
            "shape {:?} cannot be viewed as {shape:?}",
            t.shape().to_vec()
        ));
    }
    Ok(TensorData::new(values(&t)?, shape))
}

/// Axes reordered: output axis `i` is input axis `axes[i]` (numpy's `transpose(axes)`).
pub fn permute(t: &TensorData, axes: &[usize]) -> Result<TensorData, String> {
    let shape = t.shape().to_vec();
    let rank = shape.len();
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(format!(
            "has shape {shape:?} ({rank} axes); expected {} axes",
            axes.len()
        ));
    }
    let src = values(t)?;
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
    Ok(TensorData::new(out, new_shape))
}

/// A 2-D matrix transposed (a plain double loop: it runs on every Linear weight loaded).
pub fn transpose(t: &TensorData) -> Result<TensorData, String> {
    let &[rows, cols] = t.shape().as_slice() else {
        return permute(t, &[1, 0]); // the error naming the shape
    };
    let src = values(t)?;
    let mut out = vec![0.0f32; src.len()];
    for (r, row) in src.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    Ok(TensorData::new(out, vec![cols, rows]))
}

/// Tensors joined along their first axis (their other axes must agree).
pub fn cat0(parts: &[TensorData]) -> Result<TensorData, String> {
    let Some(first) = parts.first() else {
        return Err("nothing to join".into());
    };
    let mut shape = first.shape().to_vec();
    for p in parts {
        if p.shape().is_empty() || p.shape()[1..] != shape[1..] || shape.is_empty() {
            let shapes: Vec<_> = parts.iter().map(|p| p.shape().to_vec()).collect();
            return Err(format!(
                "parts of shapes {shapes:?} cannot be joined along the first axis"
            ));
        }
    }
    shape[0] = parts.iter().map(|p| p.shape()[0]).sum();
    let mut out = Vec::with_capacity(shape.iter().product());
    for p in parts {
        out.extend(values(p)?);
    }
    Ok(TensorData::new(out, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_matches_numpy() {
        // np.arange(24).reshape(2, 3, 4).transpose(2, 0, 1)[1, 1, 2] == 21
        let t = TensorData::new((0..24).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 4]);
        let p = permute(&t, &[2, 0, 1]).unwrap();
        assert_eq!(p.shape().to_vec(), vec![4, 2, 3]);
        let v = p.try_into_vec::<f32>().unwrap();
        assert_eq!(v[6 + 3 + 2], 21.0);
        assert_eq!(&v[..6], &[0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
    }

    #[test]
    fn transpose_matches_numpy() {
        // np.arange(6).reshape(2, 3).T == [[0, 3], [1, 4], [2, 5]]
        let t = TensorData::new((0..6).map(|v| v as f32).collect::<Vec<_>>(), [2, 3]);
        let p = transpose(&t).unwrap();
        assert_eq!(p.shape().to_vec(), vec![3, 2]);
        assert_eq!(
            p.try_into_vec::<f32>().unwrap(),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let cube = TensorData::new(vec![0.0f32; 8], [2, 2, 2]);
        assert!(transpose(&cube).unwrap_err().contains("[2, 2, 2]"));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let t = TensorData::new(vec![0.0f32; 6], [2, 3]);
        assert!(permute(&t, &[3, 2, 0, 1]).unwrap_err().contains("[2, 3]"));
        assert!(reshape(t.clone(), vec![4]).is_err());
        let u = TensorData::new(vec![0.0f32; 4], [2, 2]);
        assert!(cat0(&[t, u]).is_err());
        assert!(cat0(&[]).is_err());
    }
}
