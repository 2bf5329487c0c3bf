//! Branch-free `f32` exp / erf / GELU that LLVM vectorises (libm's `expf` / `erff` are scalar
//! calls, which kept Flex's GELU at one element per call).
//!
//! `erf` is Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7; the formula PyTorch's vectorised CPU
//! `erf` uses) with a series near 0; `exp` is Cody-Waite range reduction with Cephes' `expf` polynomial (~1 ulp).

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer without `roundf`.
const ROUND_MAGIC: f32 = 12_582_912.0;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `e^x` for `x` in [-87.3, 88.7] (clamped outside; below, the result is ~1e-38 instead of 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n through the exponent bits.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// The error function: its Maclaurin series below |x| = 0.5 (where A&S 7.1.26 loses digits to
/// cancellation in f32), Abramowitz & Stegun 7.1.26 above. Both are computed and one is selected,
/// which keeps the loop branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x2 = x * x;
    // 2/sqrt(pi) * (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320)
    let s = -1.0 / 1320.0;
    let s = s * x2 + 1.0 / 216.0;
    let s = s * x2 - 1.0 / 42.0;
    let s = s * x2 + 1.0 / 10.0;
    let s = s * x2 - 1.0 / 3.0;
    let s = s * x2 + 1.0;
    let series = std::f32::consts::FRAC_2_SQRT_PI * x * s;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = 1.061_405_4;
    let poly = poly * t - 1.453_152;
    let poly = poly * t + 1.421_413_8;
    let poly = poly * t - 0.284_496_74;
    let poly = poly * t + 0.254_829_6;
    let y = (1.0 - poly * t * exp(-a * a)).copysign(x);
    if a < 0.5 { series } else { y }
}

/// `x * Phi(x)`, the exact (erf) GELU of the paper and timm.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// `d gelu / dx = Phi(x) + x * phi(x)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference erf in f64: Maclaurin series below 3, the asymptotic erfc series above
    /// (truncation error < 1e-8 there).
    fn erf_f64(x: f64) -> f64 {
        let a = x.abs();
        if a >= 3.0 {
            let z = 1.0 / (2.0 * a * a);
            let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4);
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series;
            return x.signum() * (1.0 - erfc);
        }
        let (mut sum, mut term, mut n) = (0.0, x, 0.0);
        loop {
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_within_two_ulp_of_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, std) = (exp(x), x.exp());
            assert!(
                (ours - std).abs() <= 2.5e-7 * std,
                "exp({x}) = {ours}, std {std}"
            );
            x += 0.013;
        }
    }

    #[test]
    fn erf_within_abramowitz_stegun_bound() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let reference = erf_f64(x as f64);
            let err = (erf(x) as f64 - reference).abs();
            assert!(err < 3e-7, "erf({x}) = {}, reference {reference}", erf(x));
            x += 0.0071;
        }
    }

    #[test]
    fn gelu_grad_matches_finite_difference() {
        let mut x = -5.0f32;
        while x < 5.0 {
            let h = 1e-3f64;
            let g = |v: f64| 0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2));
            let fd = (g(x as f64 + h) - g(x as f64 - h)) / (2.0 * h);
            assert!((gelu_grad(x) as f64 - fd).abs() < 1e-5, "gelu'({x})");
            x += 0.037;
        }
    }
}
