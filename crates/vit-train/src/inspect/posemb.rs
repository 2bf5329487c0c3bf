//! Position-embedding similarity (the paper's Fig. 7 centre).

/// Cosine similarity of every patch position's embedding to every other's, `[N, N]`
/// row-major: `pos_embed` is `[S, D]` row-major with `prefix` tokens first (left out).
pub fn cosine_similarity(pos_embed: &[f32], s: usize, d: usize, prefix: usize) -> Vec<f64> {
    let n = s - prefix;
    let rows: Vec<&[f32]> = (prefix..s)
        .map(|i| &pos_embed[i * d..(i + 1) * d])
        .collect();
    let norms: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            out[i * n + j] = dot / (norms[i] * norms[j]).max(1e-12);
        }
    }
    out
}
