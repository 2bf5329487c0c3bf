//! vit-kernels' convolution and GroupNorm (+ affine + ReLU) against Burn's own ops, forward and
//! gradients, on Flex: the ResNets' shapes (stem 7x7 / 2, 3x3 with stride 1 and 2, 1x1 with
//! stride 1 and 2) on sizes that do not divide into tiles or threads, TF's asymmetric "SAME"
//! padding, non-contiguous inputs, and the network's first convolution (no input gradient).
//! (The whole BiT ResNet and the hybrid against timm, forward and gradients, run in vit-model's
//! tests/resnet.rs and tests/hybrid.rs.)

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation};

/// Largest |a - b| relative to (1 + max |b|), and the tensors' shapes equal.
fn rel_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.into_data().try_to_vec::<f32>().unwrap();
    let b = b.into_data().try_to_vec::<f32>().unwrap();
    let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

struct Case {
    x: [usize; 4],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: [(usize, usize); 2],
}

const CASES: [Case; 7] = [
    // The stem: 7x7 / 2, "SAME" at an even size (2 before, 3 after).
    Case {
        x: [3, 3, 30, 30],
        out_channels: 16,
        kernel: 7,
        stride: 2,
        padding: [(2, 3), (2, 3)],
    },
    // 3x3 / 1, symmetric 1 (BiT's fixed padding), a size that is no multiple of a tile.
    Case {
        x: [5, 12, 19, 23],
        out_channels: 20,
        kernel: 3,
        stride: 1,
        padding: [(1, 1), (1, 1)],
    },
    // 3x3 / 2 with "SAME"'s one row and column after only.
    Case {
        x: [2, 8, 16, 14],
        out_channels: 9,
        kernel: 3,
        stride: 2,
        padding: [(0, 1), (0, 1)],
    },
    // 1x1 / 1: the image is the patch matrix.
    Case {
        x: [3, 33, 9, 11],
        out_channels: 17,
        kernel: 1,
        stride: 1,
        padding: [(0, 0), (0, 0)],
    },
    // 1x1 / 2: the projection shortcut of a downsampling stage.
    Case {
        x: [4, 10, 13, 12],
        out_channels: 6,
        kernel: 1,
        stride: 2,
        padding: [(0, 0), (0, 0)],
    },
    // Many taps (3x3 over 96 channels) on a small image: tiles of several rows.
    Case {
        x: [2, 96, 5, 7],
        out_channels: 24,
        kernel: 3,
        stride: 1,
        padding: [(1, 1), (1, 1)],
    },
    // Wide enough that one image spans several tiles (64 taps x 130 columns x 4 B per row).
    Case {
        x: [1, 64, 70, 130],
        out_channels: 8,
        kernel: 1,
        stride: 1,
        padding: [(0, 0), (0, 0)],
    },
];

/// Ours and Burn's conv2d, outputs and the gradients of `sum(y * w)` for x and the weight.
fn compare(case: &Case, input_grad: bool) -> [f32; 3] {
    let device = Device::flex().autodiff();
    let [b, c, h, w] = case.x;
    let k = case.kernel;
    // x non-contiguous: a [B, H, C, W] buffer seen as [B, C, H, W].
    let x = Tensor::<4>::random([b, h, c, w], Distribution::Normal(0.3, 1.0), &device)
        .swap_dims(1, 2)
        .detach();
    let x = if input_grad { x.require_grad() } else { x };
    let weight = Tensor::<4>::random(
        [case.out_channels, c, k, k],
        Distribution::Normal(0.0, 0.2),
        &device,
    )
    .require_grad();
    let stride = [case.stride; 2];
    let ours = vit_kernels::conv2d(x.clone(), weight.clone(), stride, case.padding);
    let options = ConvOptions::new_with_padding(stride, case.padding, [1, 1], 1);
    let theirs = conv2d(x.clone(), weight.clone(), None, options);
    let mix = Tensor::<4>::random(theirs.dims(), Distribution::Uniform(-1.0, 1.0), &device);
    let forward = rel_diff(ours.clone(), theirs.clone());
    let g_ours = (ours * mix.clone()).sum().backward();
    let g_theirs = (theirs * mix).sum().backward();
    let dw = rel_diff(
        weight.grad(&g_ours).unwrap(),
        weight.grad(&g_theirs).unwrap(),
    );
    let dx = if input_grad {
        rel_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap())
    } else {
        assert!(
            x.grad(&g_ours).is_none(),
            "no gradient for an untracked input"
        );
        0.0
    };
    [forward, dx, dw]
}

#[test]
fn conv2d_equals_burns_forward_and_backward() {
    for case in &CASES {
        let [forward, dx, dw] = compare(case, true);
        let what = format!(
            "{:?} by {}x{} / {} padding {:?}",
            case.x, case.kernel, case.kernel, case.stride, case.padding
        );
        assert!(forward < 1e-5, "{what}: output differs by {forward}");
        assert!(dx < 1e-5, "{what}: input gradient differs by {dx}");
        assert!(dw < 1e-5, "{what}: weight gradient differs by {dw}");
    }
}

#[test]
fn the_first_convolution_gets_only_a_weight_gradient() {
    let [forward, _, dw] = compare(&CASES[0], false);
    assert!(forward < 1e-5 && dw < 1e-5, "{forward} {dw}");
}

#[test]
fn conv2d_without_autodiff_equals_burns() {
    let device = Device::flex();
    let case = &CASES[1];
    let x = Tensor::<4>::random(case.x, Distribution::Normal(0.0, 1.0), &device);
    let weight = Tensor::<4>::random([7, case.x[1], 3, 3], Distribution::Default, &device);
    let ours = vit_kernels::conv2d(x.clone(), weight.clone(), [1, 1], case.padding);
    let options = ConvOptions::new_with_padding([1, 1], case.padding, [1, 1], 1);
    let d = rel_diff(ours, conv2d(x, weight, None, options));
    assert!(d < 1e-5, "{d}");
}

/// GroupNorm + affine (+ ReLU) composed from Burn's tensor ops, as timm's `GroupNormAct`.
fn group_norm_reference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    relu: bool,
) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let rows = x.reshape([b, groups, c / groups * h * w]);
    let mean = rows.clone().mean_dim(2);
    let centered = rows - mean;
    let var = (centered.clone() * centered.clone()).mean_dim(2);
    let y = (centered / (var + 1e-5).sqrt()).reshape([b, c, h, w]);
    let y = y * gamma.reshape([1, c, 1, 1]) + beta.reshape([1, c, 1, 1]);
    if relu { activation::relu(y) } else { y }
}

#[test]
fn group_norm_equals_burns_forward_and_backward() {
    let device = Device::flex().autodiff();
    // 24 channels in 6 groups over 7x9, 3 images; and one group per channel.
    for (shape, groups) in [([3, 24, 7, 9], 6), ([2, 5, 4, 3], 5), ([2, 32, 3, 3], 32)] {
        for relu in [true, false] {
            let [_, c, _, _] = shape;
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.5, 2.0), &device)
                .detach()
                .require_grad();
            let gamma =
                Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device).require_grad();
            let beta =
                Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device).require_grad();
            let ours =
                vit_kernels::group_norm(x.clone(), gamma.clone(), beta.clone(), groups, 1e-5, relu);
            let theirs = group_norm_reference(x.clone(), gamma.clone(), beta.clone(), groups, relu);
            let mix = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
            let what = format!("{shape:?} in {groups} groups, relu {relu}");
            let d = rel_diff(ours.clone(), theirs.clone());
            assert!(d < 1e-5, "{what}: output differs by {d}");
            let g_ours = (ours * mix.clone()).sum().backward();
            let g_theirs = (theirs * mix).sum().backward();
            let dx = rel_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
            let dg = rel_diff(gamma.grad(&g_ours).unwrap(), gamma.grad(&g_theirs).unwrap());
            let db = rel_diff(beta.grad(&g_ours).unwrap(), beta.grad(&g_theirs).unwrap());
            assert!(dx < 1e-5, "{what}: dx differs by {dx}");
            assert!(dg < 1e-5 && db < 1e-5, "{what}: dgamma {dg}, dbeta {db}");
        }
    }
}

#[test]
#[should_panic(expected = "vit_kernels::conv2d: the weight must be [O, 3, kh, kw]")]
fn a_weight_of_other_channels_is_named() {
    let device = Device::flex();
    vit_kernels::conv2d(
        Tensor::zeros([1, 3, 8, 8], &device),
        Tensor::zeros([4, 2, 3, 3], &device),
        [1, 1],
        [(1, 1); 2],
    );
}

#[test]
#[should_panic(expected = "5 groups do not divide the 12 channels")]
fn groups_that_do_not_divide_the_channels_are_named() {
    let device = Device::flex();
    vit_kernels::group_norm(
        Tensor::zeros([1, 12, 2, 2], &device),
        Tensor::ones([12], &device),
        Tensor::zeros([12], &device),
        5,
        1e-5,
        true,
    );
}

#[test]
fn a_nan_stays_in_its_group() {
    let device = Device::flex();
    let mut v = vec![0.25f32; 2 * 4 * 3 * 3];
    v[5] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(v, [2, 4, 3, 3]), &device);
    let y = vit_kernels::group_norm(
        x,
        Tensor::ones([4], &device),
        Tensor::zeros([4], &device),
        2,
        1e-5,
        false,
    )
    .into_data()
    .try_to_vec::<f32>()
    .unwrap();
    // Group 0 of image 0 is channels 0-1 (18 values).
    assert!(y[..18].iter().all(|v| v.is_nan()));
    assert!(y[18..].iter().all(|v| v.is_finite()));
}
