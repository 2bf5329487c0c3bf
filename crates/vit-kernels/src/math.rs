//! Branch-free `f32` exp / erf / GELU that LLVM vectorises (libm's `expf` / `erff` are scalar
//! calls, which kept Flex's GELU at one element per call).
//!
//! `erf` is Eigen's rational approximation (as in TensorFlow / XLA); `exp` is Cody-Waite range reduction with Cephes' `expf` polynomial (~1 ulp).

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer without `roundf`.
const ROUND_MAGIC: f32 = 12_582_912.0;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `e^x` for `x` in [-87.3, 88.7] (clamped outside; below, the result is ~1e-38 instead of 0).
/// NaN gives NaN (a diverging run's NaN must reach the loss, where the trainer stops on it).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = x.mul_add(LOG2E, ROUND_MAGIC) - ROUND_MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let p = (p * r).mul_add(r, r + 1.0);
    // 2^n through the exponent bits. `as i32` would saturate and check for NaN one element at
    // a time (it stopped the loop from vectorising); an unchecked conversion of a value known
    // to be a whole number in range is one instruction. `clamp` keeps a NaN `x` (and so `n`),
    // but `max` / `min` return their other operand for NaN: `n` becomes -126 there, and `p`
    // (NaN) still makes the result NaN.
    #[allow(clippy::manual_clamp)] // `clamp` would keep the NaN: that is the point here.
    let n = n.max(-126.0).min(128.0);
    // SAFETY: `n` is finite and within [-126, 128] (the line above, whatever `x` was: NaN, an
    // infinity or a number), so it fits an i32.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    p * scale
}

/// The error function: Eigen's rational approximation for f32 (odd degree-13 numerator over
/// even degree-8 denominator; |error| < 5e-7, tested): one division, no `exp`. Beyond |x| = 3.92
/// erf rounds to +-1 in f32, which is returned exactly.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let saturated = 1.0f32.copysign(x);
    let big = x.abs() >= 3.92;
    let x = x.clamp(-3.92, 3.92);
    let x2 = x * x;
    let p = -2.726_142_3e-10f32;
    let p = p.mul_add(x2, 2.770_681_4e-8);
    let p = p.mul_add(x2, -2.101_024e-6);
    let p = p.mul_add(x2, -5.692_506_4e-5);
    let p = p.mul_add(x2, -7.349_906_3e-4);
    let p = p.mul_add(x2, -2.954_6e-3);
    let p = p.mul_add(x2, -1.609_603_3e-2);
    let q = -1.456_607_2e-5f32;
    let q = q.mul_add(x2, -2.133_740_6e-4);
    let q = q.mul_add(x2, -1.682_827e-3);
    let q = q.mul_add(x2, -7.373_329e-3);
    let q = q.mul_add(x2, -1.426_474e-2);
    let y = x * p / q;
    if big { saturated } else { y }
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
    fn exp_of_nan_and_infinities() {
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(f32::INFINITY) >= 3.0e38);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(gelu_grad(f32::NAN).is_nan());
    }

    #[test]
    fn erf_within_5e_7_of_f64_reference() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let reference = erf_f64(x as f64);
            let err = (erf(x) as f64 - reference).abs();
            assert!(err < 5e-7, "erf({x}) = {}, reference {reference}", erf(x));
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
