//! Attention rollout (Abnar & Zuidema 2020): how much each input token reaches the output,
//! through every layer's attention and the residual connection.

use crate::cli::HeadFusion;

/// One layer's attention over its heads, fused into an `[S, S]` matrix (row-major).
///
/// `heads`: `h` matrices `[S, S]` one after another (softmax rows, class token first).
pub fn fuse_heads(heads: &[f32], h: usize, s: usize, fusion: HeadFusion) -> Vec<f64> {
    let mut out = vec![0.0f64; s * s];
    for (i, o) in out.iter_mut().enumerate() {
        let values = (0..h).map(|k| f64::from(heads[k * s * s + i]));
        *o = match fusion {
            HeadFusion::Mean => values.sum::<f64>() / h as f64,
            HeadFusion::Max => values.fold(f64::MIN, f64::max),
            HeadFusion::Min => values.fold(f64::MAX, f64::min),
        };
    }
    out
}

/// The rollout `R = Â_L ... Â_1` of fused layers (`[S, S]` each), where
/// `Â = rownorm(0.5 A + 0.5 I)` after zeroing the lowest `discard` fraction of `A`'s entries
/// (never entry `[0, 0]`, the class token's own). Rows are renormalised as rows (not the
/// columns that a missing `keepdim` divides in some published code).
pub fn rollout(fused: &[Vec<f64>], s: usize, discard: f64) -> Vec<f64> {
    let mut r = identity(s);
    for a in fused {
        let mut a = a.clone();
        let n = ((s * s) as f64 * discard).floor() as usize;
        if n > 0 {
            let mut order: Vec<usize> = (0..s * s).collect();
            order.sort_by(|&i, &j| a[i].total_cmp(&a[j]).then(i.cmp(&j)));
            for &i in order.iter().take(n) {
                if i != 0 {
                    a[i] = 0.0;
                }
            }
        }
        for i in 0..s {
            a[i * s + i] += 1.0;
            let row = &mut a[i * s..(i + 1) * s];
            // 0.5 A + 0.5 I, renormalised: the 0.5 cancels.
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        r = matmul(&a, &r, s);
    }
    r
}

/// The rollout map over the patch grid, divided by its maximum: the class token's row of
/// `R` (its patch columns), or, for a model without a class token (`prefix` 0), the mean of
/// `R`'s rows.
pub fn rollout_map(r: &[f64], s: usize, prefix: usize) -> Vec<f64> {
    let map: Vec<f64> = if prefix > 0 {
        r[prefix..s].to_vec()
    } else {
        (0..s)
            .map(|k| (0..s).map(|i| r[i * s + k]).sum::<f64>() / s as f64)
            .collect()
    };
    let max = map.iter().copied().fold(f64::MIN, f64::max);
    map.into_iter()
        .map(|v| if max > 0.0 { v / max } else { v })
        .collect()
}

fn identity(s: usize) -> Vec<f64> {
    let mut m = vec![0.0; s * s];
    (0..s).for_each(|i| m[i * s + i] = 1.0);
    m
}

/// `a b` for `[s, s]` row-major matrices.
fn matmul(a: &[f64], b: &[f64], s: usize) -> Vec<f64> {
    let mut out = vec![0.0; s * s];
    for i in 0..s {
        let row = &mut out[i * s..(i + 1) * s];
        for k in 0..s {
            let aik = a[i * s + k];
            if aik != 0.0 {
                for (o, &bkj) in row.iter_mut().zip(&b[k * s..(k + 1) * s]) {
                    *o += aik * bkj;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_rollout_sum_to_one() {
        // Two tokens, two layers: uniform attention keeps R row-stochastic.
        let a = vec![0.25, 0.75, 0.5, 0.5];
        let r = rollout(&[a.clone(), a], 2, 0.0);
        for i in 0..2 {
            assert!((r[i * 2] + r[i * 2 + 1] - 1.0).abs() < 1e-12);
        }
        // One layer: Â = rownorm(A + I) = [[1.25, 0.75], [0.5, 1.5]] / 2.
        let r = rollout(&[vec![0.25, 0.75, 0.5, 0.5]], 2, 0.0);
        assert!((r[0] - 0.625).abs() < 1e-12 && (r[3] - 0.75).abs() < 1e-12);
    }
}
