//! Mean attention distance (the paper's Fig. 7 right, App. D.7): how far, in input pixels, a
//! head looks on average.

/// Mean attention distance of each head of one layer for one image, in input pixels.
///
/// `heads`: `h` attention matrices `[S, S]`, `prefix` tokens first; `grid` the patch grid and
/// `pixels` the input pixels per patch `[height, width]`. The prefix rows and columns are
/// dropped (no renormalisation); for each patch query q, `sum_k A[q, k] * |c_q - c_k|` over
/// patch keys k with c the patch centres; then the mean over queries.
pub fn mean_distance(
    heads: &[f32],
    h: usize,
    s: usize,
    prefix: usize,
    grid: [usize; 2],
    pixels: [usize; 2],
) -> Vec<f64> {
    let n = grid[0] * grid[1];
    debug_assert_eq!(n + prefix, s);
    let centre = |p: usize| {
        let (r, c) = (p / grid[1], p % grid[1]);
        (
            (r as f64 + 0.5) * pixels[0] as f64,
            (c as f64 + 0.5) * pixels[1] as f64,
        )
    };
    let mut dist = vec![0.0f64; n * n];
    for q in 0..n {
        let (yq, xq) = centre(q);
        for k in 0..n {
            let (yk, xk) = centre(k);
            dist[q * n + k] = ((yq - yk).powi(2) + (xq - xk).powi(2)).sqrt();
        }
    }
    (0..h)
        .map(|head| {
            let a = &heads[head * s * s..(head + 1) * s * s];
            let total: f64 = (0..n)
                .map(|q| {
                    let row = &a[(prefix + q) * s + prefix..(prefix + q + 1) * s];
                    row.iter()
                        .zip(&dist[q * n..(q + 1) * n])
                        .map(|(&w, &d)| f64::from(w) * d)
                        .sum::<f64>()
                })
                .sum();
            total / n as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_that_looks_at_its_neighbour_has_the_patch_distance() {
        // 1x2 grid of 16-px patches, no prefix: each query attends fully to the other.
        let a = [0.0f32, 1.0, 1.0, 0.0];
        let d = mean_distance(&a, 1, 2, 0, [1, 2], [16, 16]);
        assert!((d[0] - 16.0).abs() < 1e-12);
        // Attending to itself: distance 0.
        let a = [1.0f32, 0.0, 0.0, 1.0];
        assert_eq!(mean_distance(&a, 1, 2, 0, [1, 2], [16, 16])[0], 0.0);
    }
}
