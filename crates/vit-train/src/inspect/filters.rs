//! Principal components of the patch-embedding filters (the paper's Fig. 7 left).
//!
//! The eigen-decomposition is a cyclic Jacobi on the smaller Gram matrix of the filters
//! (`D x D` or `K x K`, at most 1,024 for the presets): a few seconds at worst, in f64. A
//! linear-algebra crate was tried: its feature unification rebuilt all of Burn.

/// The first `k` principal components of the `D` filters of a patch embedding (weight
/// `[D, K]` row-major, K = C * ph * pw), each a unit K-vector (timm's `[C, ph, pw]` layout),
/// and the fraction of the variance each explains. The filters are centred over D. A
/// component's sign is arbitrary (its negative is the same component).
pub fn principal_components(
    weight: &[f32],
    d: usize,
    k_in: usize,
    k: usize,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut x: Vec<f64> = weight.iter().map(|&v| f64::from(v)).collect();
    for j in 0..k_in {
        let mean = (0..d).map(|i| x[i * k_in + j]).sum::<f64>() / d as f64;
        (0..d).for_each(|i| x[i * k_in + j] -= mean);
    }
    // Eigenvectors of X^T X are the components; with D < K, those of X X^T mapped by X^T.
    let small = d < k_in;
    let n = if small { d } else { k_in };
    let mut g = vec![0.0; n * n];
    for a in 0..n {
        for b in a..n {
            let dot: f64 = if small {
                (0..k_in).map(|j| x[a * k_in + j] * x[b * k_in + j]).sum()
            } else {
                (0..d).map(|i| x[i * k_in + a] * x[i * k_in + b]).sum()
            };
            g[a * n + b] = dot;
            g[b * n + a] = dot;
        }
    }
    let (values, vectors) = jacobi_eigen(g, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let take = k.min(n);
    let mut components = Vec::with_capacity(take);
    let mut explained = Vec::with_capacity(take);
    for &e in &order[..take] {
        let u: Vec<f64> = (0..n).map(|r| vectors[r * n + e]).collect();
        let mut v: Vec<f64> = if small {
            (0..k_in)
                .map(|j| (0..d).map(|i| x[i * k_in + j] * u[i]).sum())
                .collect()
        } else {
            u
        };
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|a| *a /= norm);
        }
        components.push(v);
        explained.push(values[e].max(0.0) / total.max(f64::MIN_POSITIVE));
    }
    (components, explained)
}

/// Eigenvalues and eigenvectors (columns of the returned `[n, n]` row-major matrix) of a
/// symmetric matrix, by cyclic Jacobi rotations until the off-diagonal is negligible.
pub fn jacobi_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (arp, arq) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * arp - s * arq;
                    a[r * n + q] = s * arp + c * arq;
                }
                for r in 0..n {
                    let (apr, aqr) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * apr - s * aqr;
                    a[q * n + r] = s * apr + c * aqr;
                }
                for r in 0..n {
                    let (vrp, vrq) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * vrp - s * vrq;
                    v[r * n + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_small_symmetric_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3.
        let (mut values, _) = jacobi_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
    }
}
