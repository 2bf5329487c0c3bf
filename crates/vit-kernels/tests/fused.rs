//! The fused kernels (`vit_kernels`) against Burn's own implementations of the same ops,
//! forward and gradients, on awkward shapes: a feature size that is not a multiple of the SIMD
//! width, more rows than one thread's share, non-contiguous inputs, large logits.
//! (The whole model's outputs and gradients are compared with PyTorch in `parity.rs`.)

use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::layer_norm;
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation};
use vit_kernels as fused;

fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.into_data(), b.into_data());
    let (a, b) = (
        a.try_to_vec::<f32>().unwrap(),
        b.try_to_vec::<f32>().unwrap(),
    );
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_diff1(a: Tensor<1>, b: Tensor<1>) -> f32 {
    max_diff(a.unsqueeze(), b.unsqueeze())
}

/// The gradient of `sum(y * w)` for `x`.
fn input_grad(x: &Tensor<3>, y: Tensor<3>, w: &Tensor<3>) -> Tensor<3> {
    x.grad(&(y * w.clone()).sum().backward()).unwrap()
}

/// `[40, 31, 37]` viewed as `[31, 40, 37]` (non-contiguous), N(0, std).
fn input(device: &Device, std: f64) -> Tensor<3> {
    Tensor::<3>::random([40, 31, 37], Distribution::Normal(0.5, std), device).swap_dims(0, 1)
}

/// The weights of a weighted sum, so that every output element's gradient differs.
fn weights(device: &Device) -> Tensor<3> {
    Tensor::random([31, 40, 37], Distribution::Uniform(-1.0, 1.0), device)
}

#[test]
fn gelu_equals_burns() {
    let device = Device::flex().autodiff();
    let w = weights(&device);
    let x = input(&device, 3.0).detach().require_grad();
    let ours = fused::gelu(x.clone());
    let theirs = activation::gelu(x.clone());
    // Burn's GELU uses libm's erff; ours a rational erf within 5e-7, i.e. gelu(x) within
    // 0.5 |x| 5e-7.
    let d = max_diff(ours.clone(), theirs.clone());
    assert!(d < 2e-6, "gelu differs by {d}");
    let d = max_diff(input_grad(&x, ours, &w), input_grad(&x, theirs, &w));
    assert!(d < 2e-6, "gelu gradient differs by {d}");
}

#[test]
fn layer_norm_equals_burns() {
    let device = Device::flex().autodiff();
    let w = weights(&device);
    let x = input(&device, 2.0).detach().require_grad();
    let gamma = Tensor::<1>::random([37], Distribution::Normal(1.0, 0.5), &device).require_grad();
    let beta = Tensor::<1>::random([37], Distribution::Normal(0.0, 0.5), &device).require_grad();
    let ours = fused::layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-6);
    let theirs = layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-6);
    let d = max_diff(ours.clone(), theirs.clone());
    assert!(d < 1e-5, "layer norm differs by {d}");

    let g_ours = (ours * w.clone()).sum().backward();
    let g_theirs = (theirs * w).sum().backward();
    let dx = max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
    // dgamma / dbeta sum over 1,240 rows.
    let dgamma = max_diff1(gamma.grad(&g_ours).unwrap(), gamma.grad(&g_theirs).unwrap());
    let dbeta = max_diff1(beta.grad(&g_ours).unwrap(), beta.grad(&g_theirs).unwrap());
    assert!(dx < 1e-4, "dx differs by {dx}");
    assert!(
        dgamma < 1e-3 && dbeta < 1e-3,
        "dgamma {dgamma}, dbeta {dbeta}"
    );
}

#[test]
fn scaled_softmax_equals_burns() {
    let device = Device::flex().autodiff();
    let w = weights(&device);
    // Logits up to ~+-100 after scaling: the row maximum must be subtracted.
    let x = input(&device, 100.0).detach().require_grad();
    let scale = 0.7;
    let ours = fused::scaled_softmax(x.clone(), scale);
    let theirs = activation::softmax(x.clone() * scale, 2);
    let d = max_diff(ours.clone(), theirs.clone());
    assert!(d < 1e-6, "softmax differs by {d}");
    let d = max_diff(input_grad(&x, ours, &w), input_grad(&x, theirs, &w));
    assert!(d < 1e-5, "softmax gradient differs by {d}");
}

#[test]
fn inference_path_needs_no_autodiff() {
    let device = Device::flex();
    let x = Tensor::<3>::from_data(
        TensorData::new(vec![-1.0f32, 0.0, 1.0, 2.0], [1, 1, 4]),
        &device,
    );
    let y = fused::gelu(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    // x * Phi(x): Phi(-1) = 0.158655, Phi(1) = 0.841345, Phi(2) = 0.977250.
    let want = [-0.158_655_26f32, 0.0, 0.841_344_7, 1.954_499_7];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{y:?}");
    }
    let p = fused::scaled_softmax(x, 1.0)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[3] > p[2]);
}

/// Multi-head attention from `qkv` `[B, S, 3D]` with Burn's ops (timm's layout and order).
fn burn_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    let [b, s, d3] = qkv.dims();
    let (d, dh) = (d3 / 3, d3 / 3 / heads);
    let qkv = qkv.reshape([b, s, 3, heads, dh]).permute([2, 0, 3, 1, 4]);
    let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0));
    let weights = activation::softmax(q.matmul(k.swap_dims(2, 3)) * (dh as f64).powf(-0.5), 3);
    weights.matmul(v).swap_dims(1, 2).reshape([b, s, d])
}

#[test]
fn multi_head_attention_equals_burns() {
    let device = Device::flex().autodiff();
    // 17 tokens, 3 heads of 8: nothing a multiple of the SIMD width.
    let qkv =
        Tensor::<3>::random([5, 17, 72], Distribution::Normal(0.0, 2.0), &device).require_grad();
    let w = Tensor::<3>::random([5, 17, 24], Distribution::Uniform(-1.0, 1.0), &device);
    let ours = fused::multi_head_attention(qkv.clone(), 3);
    let theirs = burn_attention(qkv.clone(), 3);
    let d = max_diff(ours.clone(), theirs.clone());
    assert!(d < 1e-5, "attention differs by {d}");
    let d = max_diff(input_grad(&qkv, ours, &w), input_grad(&qkv, theirs, &w));
    assert!(d < 1e-5, "attention gradient differs by {d}");

    // Without autodiff (inference) too.
    let device = Device::flex();
    let qkv = Tensor::<3>::random([2, 17, 72], Distribution::Normal(0.0, 2.0), &device);
    let d = max_diff(
        fused::multi_head_attention(qkv.clone(), 3),
        burn_attention(qkv, 3),
    );
    assert!(d < 1e-5, "attention differs by {d} at inference");
}

/// `ours` against `theirs` for a Linear layer: at inference and under autodiff (output and the
/// gradients of the input, weight and bias), on 2,100 rows (more than one of the fused kernels'
/// row blocks) of width 37.
fn check_linear(
    name: &str,
    ours: fn(&Linear, Tensor<3>) -> Tensor<3>,
    theirs: fn(&Linear, Tensor<3>) -> Tensor<3>,
) {
    let device = Device::flex();
    let layer = LinearConfig::new(37, 29).init(&device);
    let x = Tensor::<3>::random([3, 700, 37], Distribution::Normal(0.0, 1.0), &device);
    let d = max_diff(ours(&layer, x.clone()), theirs(&layer, x));
    assert!(d < 1e-5, "{name} differs by {d} at inference");

    let device = Device::flex().autodiff();
    let layer = LinearConfig::new(37, 29).init(&device);
    let x =
        Tensor::<3>::random([3, 700, 37], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let w = Tensor::<3>::random([3, 700, 29], Distribution::Uniform(-1.0, 1.0), &device);
    let (ours, theirs) = (ours(&layer, x.clone()), theirs(&layer, x.clone()));
    let d = max_diff(ours.clone(), theirs.clone());
    assert!(d < 1e-5, "{name} differs by {d}");
    let g_ours = (ours * w.clone()).sum().backward();
    let g_theirs = (theirs * w).sum().backward();
    let dx = max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
    let dw = max_diff(
        layer.weight.val().grad(&g_ours).unwrap().unsqueeze(),
        layer.weight.val().grad(&g_theirs).unwrap().unsqueeze(),
    );
    let bias = layer.bias.as_ref().unwrap().val();
    let db = max_diff1(bias.grad(&g_ours).unwrap(), bias.grad(&g_theirs).unwrap());
    assert!(dx < 1e-5, "{name}: dx differs by {dx}");
    // dW and db sum over 2,100 rows.
    assert!(dw < 1e-3 && db < 1e-3, "{name}: dW {dw}, db {db}");
}

#[test]
fn linear_equals_burns() {
    check_linear("linear", fused::linear, |layer, x| layer.forward(x));
}

#[test]
fn linear_gelu_equals_burns() {
    check_linear("linear_gelu", fused::linear_gelu, |layer, x| {
        activation::gelu(layer.forward(x))
    });
}

// Preconditions: shapes the kernels would index out of bounds with (or leave output unwritten
// for) stop at the entry point with a message, in release builds too.

#[test]
#[should_panic(expected = "fused::linear: x's last axis (5")]
fn linear_of_the_wrong_width_panics_with_the_shapes() {
    let device = Device::flex();
    let layer = LinearConfig::new(4, 6).init(&device);
    fused::linear(&layer, Tensor::zeros([2, 3, 5], &device));
}

#[test]
#[should_panic(expected = "must be 3 * D with D divisible by heads (3)")]
fn attention_with_heads_not_dividing_the_width_panics() {
    let device = Device::flex();
    // 3 * 10: D = 10 is not divisible by 3 heads (the last column would go unwritten).
    fused::multi_head_attention(Tensor::zeros([2, 4, 30], &device), 3);
}

#[test]
#[should_panic(expected = "must be 3 * D")]
fn attention_with_a_width_not_divisible_by_three_panics() {
    let device = Device::flex();
    fused::multi_head_attention(Tensor::zeros([2, 4, 16], &device), 2);
}

#[test]
#[should_panic(expected = "vit_linear: x's last axis")]
fn the_backend_op_checks_too() {
    use burn::backend::Flex;
    use vit_kernels::VitOps;
    // The backend extension's ops are public too: called directly, they check as well.
    let x = burn::backend::flex::FlexTensor::from_data(TensorData::new(vec![0f32; 15], [3, 5]));
    let w = burn::backend::flex::FlexTensor::from_data(TensorData::new(vec![0f32; 24], [4, 6]));
    let b = burn::backend::flex::FlexTensor::from_data(TensorData::new(vec![0f32; 6], [6]));
    let _ = <Flex as VitOps>::vit_linear(x, w, b);
}

#[test]
fn a_nan_reaches_the_output_of_softmax_and_gelu() {
    let device = Device::flex();
    let mut v = vec![0.5f32; 2 * 3 * 17];
    v[20] = f32::NAN;
    let x = Tensor::<3>::from_data(TensorData::new(v, [2, 3, 17]), &device);
    let s = fused::scaled_softmax(x.clone(), 0.5)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(s[17..34].iter().all(|v| v.is_nan()), "the NaN's row is NaN");
    assert!(s[..17].iter().all(|v| v.is_finite()), "other rows are not");
    let g = fused::gelu(x).into_data().try_to_vec::<f32>().unwrap();
    assert!(g[20].is_nan() && g[21].is_finite());
}
