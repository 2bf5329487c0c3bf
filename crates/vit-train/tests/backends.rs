//! Training on every compiled backend gives Flex's numbers: the same seed gives the same
//! initial model (drawn on the host), and a few optimiser steps (the trainer's loss, global-norm
//! clipping and optimiser, dropout off) give the same losses, gradient norms and parameters,
//! for each family: the ViT, the hybrid and the BiT ResNet.
//! Flex runs vit-kernels (attention, LayerNorm, softmax, GELU, Linear, convolution and
//! GroupNorm); ndarray and wgpu run Burn's own ops, so a fused kernel that
//! drifts from the reference ops fails here, on the op and in training.
//!
//! Built with `--features vit-train/ndarray` and/or `--features vit-train/wgpu` (the README's
//! test command has both; wgpu runs on Mesa's lavapipe in CI).
//!
//! `VIT_TEST_DEVICES=cuda,wgpu` adds those devices (`cargo xtask gpu-check` sets it on a GPU
//! machine).

mod common;

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vit_kernels as fused;
use vit_model::resnet::{BitConfig, ResNetConfig};
use vit_model::weights::{StateDict, state_dict};
use vit_model::{ModelConfig, VitConfig, device_from_name};
use vit_train::config::{OptimizerKind, TrainSection};
use vit_train::data::loader::Batch;
use vit_train::train::{optim, step};

use common::serial;

/// Relative to max(1, |value|). The aim was 1e-4; measured: losses and gradient norms
/// within 2e-7, parameters after three steps within 6e-8, each op within ~1e-6 (Burn's own
/// GELU gradient, the tanh approximation's derivative, was 4.3e-4 off until vit's GELU wrote
/// out the erf form on every backend).
const TOL: f64 = 1e-5;
const STEPS: usize = 3;
const BATCH: usize = 4;

/// A class-token ViT: 28x28x1, patch 7, D 32, two blocks, qkv bias.
fn vit() -> VitConfig {
    VitConfig::new()
        .with_image_size([28, 28])
        .with_patch_size([7, 7])
        .with_in_channels(1)
        .with_num_classes(10)
        .with_embed_dim(32)
        .with_depth(2)
        .with_num_heads(2)
}

/// A hybrid: the stem and one bottleneck stage (weight-standardised convs with SAME padding,
/// GroupNorm, max-pool), 1x1 patches on its 8x8 feature map, mean pooling.
fn hybrid() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([1, 1])
        .with_num_classes(5)
        .with_embed_dim(32)
        .with_depth(1)
        .with_num_heads(2)
        .with_pool(vit_model::Pool::Mean)
        .with_class_token(false)
        .with_backbone(Some(
            ResNetConfig::new().with_layers(vec![1]).with_stem_width(32),
        ))
}

/// A BiT ResNet (the paper's ResNet family): the fixed stem, two stages of one
/// pre-activation bottleneck each (weight-standardised convs, GroupNorm), the 1x1-conv head;
/// narrow (8 groups), as lavapipe's convolutions are slow.
fn resnet() -> BitConfig {
    BitConfig::new()
        .with_layers(vec![1, 1])
        .with_channels(vec![32, 64])
        .with_stem_width(16)
        .with_norm_groups(8)
        .with_image_size([32, 32])
        .with_num_classes(5)
}

struct Trace {
    init: StateDict,
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    trained: StateDict,
}

/// `STEPS` steps of the trainer's own step (`train::step::optimizer_step`: soft-target
/// cross-entropy, global-norm clipping at 1, SGD with momentum 0.9 and weight decay 0.05 outside
/// the no-decay group) on fixed random batches, on `device`.
fn train_steps(config: &ModelConfig, device: &str) -> Trace {
    let ad = device_from_name(device).unwrap().autodiff();
    let mut model = {
        let _serial = serial();
        config.init_seeded(17, &ad).unwrap()
    };
    let init = state_dict(&model);
    let t = TrainSection {
        optimizer: OptimizerKind::Sgd,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.05,
        clip_grad_norm: Some(1.0),
        ..Default::default()
    };
    let mut optim = optim::build(&t, &model);
    let [h, w] = config.image_size();
    let (c, k) = (config.in_channels(), config.num_classes());
    let mut rng = StdRng::seed_from_u64(5);
    let (mut losses, mut grad_norms) = (Vec::new(), Vec::new());
    for _ in 0..STEPS {
        let images: Vec<f32> = (0..BATCH * c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        // Smoothed one-hot targets, as the trainer builds them.
        let mut targets = vec![0.1 / k as f32; BATCH * k];
        for row in targets.chunks_mut(k) {
            row[rng.random_range(0..k)] += 0.9;
        }
        let batch = Batch {
            images,
            labels: vec![0; BATCH],
            targets,
            skipped: Vec::new(),
        };
        let (next, step) =
            step::optimizer_step(model, &mut optim, &batch, [c, h, w], &t, t.lr, None, &ad)
                .unwrap();
        model = next;
        losses.push(step.loss);
        grad_norms.push(step.grad_norm);
    }
    Trace {
        init,
        losses,
        grad_norms,
        trained: state_dict(&model),
    }
}

/// The largest `|a - b| / max(1, |a|)` over every value of every tensor, and its key.
fn max_rel(a: &StateDict, b: &StateDict) -> (f64, String) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the state dicts name different tensors"
    );
    let mut worst = (0.0, String::new());
    for (key, ta) in a {
        let va = ta.try_to_vec::<f32>().unwrap();
        let vb = b[key].try_to_vec::<f32>().unwrap();
        for (x, y) in va.iter().zip(&vb) {
            let d = f64::from((x - y).abs()) / f64::from(x.abs()).max(1.0);
            if d > worst.0 || d.is_nan() {
                worst = (d, key.clone());
            }
        }
    }
    worst
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(1.0)
}

fn trains_as_flex(name: &str, config: impl Into<ModelConfig>, device: &str) {
    let config = &config.into();
    let flex = train_steps(config, "cpu");
    let other = train_steps(config, device);
    // Host initialisation: bit for bit the same model on both devices.
    let (d, key) = max_rel(&flex.init, &other.init);
    assert_eq!(d, 0.0, "{name} on {device}: initial `{key}` differs by {d}");
    for (i, (a, b)) in flex.losses.iter().zip(&other.losses).enumerate() {
        assert!(
            rel(*a, *b) <= TOL,
            "{name} on {device}: loss of step {i}: {a} vs {b}"
        );
    }
    for (i, (a, b)) in flex.grad_norms.iter().zip(&other.grad_norms).enumerate() {
        assert!(
            rel(*a, *b) <= TOL,
            "{name} on {device}: gradient norm of step {i}: {a} vs {b}"
        );
    }
    let (d, key) = max_rel(&flex.trained, &other.trained);
    assert!(
        d <= TOL,
        "{name} on {device}: after {STEPS} steps `{key}` differs by {d} (relative)"
    );
    // The losses must have moved, or the comparison proves little.
    assert!(rel(flex.losses[0], flex.losses[STEPS - 1]) > 1e-3);
    eprintln!(
        "{name} on {device}: losses {:?} vs {:?}; gradient norms {:?} vs {:?}; parameters \
         within {d:.2e} (`{key}`)",
        flex.losses, other.losses, flex.grad_norms, other.grad_norms
    );
}

/// A Linear over inputs 1 (weight `[1, D_in, D_out]`) and 2 (bias `[1, 1, D_out]`), as
/// non-leaf views so the gradients reach those inputs.
fn linear_of(v: &[Tensor<3>]) -> Linear {
    let [_, din, dout] = v[1].dims();
    Linear {
        weight: Param::initialized(ParamId::new(), v[1].clone().reshape([din, dout])),
        bias: Some(Param::initialized(
            ParamId::new(),
            v[2].clone().reshape([dout]),
        )),
    }
}

/// Each fused op, forward and gradients of every input, on Flex (the fused kernel) against
/// `device` (Burn's ops), from the same host values.
fn fused_ops_as_flex(device: &str) {
    type Op = fn(Vec<Tensor<3>>) -> Tensor<3>;
    let ops: Vec<(&str, Vec<[usize; 3]>, Op)> = vec![
        ("gelu", vec![[2, 17, 48]], |v| fused::gelu(v[0].clone())),
        (
            "layer_norm",
            vec![[2, 17, 48], [1, 1, 48], [1, 1, 48]],
            |v| {
                fused::layer_norm(
                    v[0].clone(),
                    v[1].clone().reshape([48]),
                    v[2].clone().reshape([48]),
                    1e-6,
                )
            },
        ),
        ("scaled_softmax", vec![[2, 17, 17]], |v| {
            fused::scaled_softmax(v[0].clone(), 0.25)
        }),
        ("multi_head_attention", vec![[2, 17, 48]], |v| {
            fused::multi_head_attention(v[0].clone(), 2)
        }),
        ("linear", vec![[2, 17, 48], [1, 48, 24], [1, 1, 24]], |v| {
            fused::linear(&linear_of(&v), v[0].clone())
        }),
        (
            "linear_gelu",
            vec![[2, 17, 48], [1, 48, 24], [1, 1, 24]],
            |v| fused::linear_gelu(&linear_of(&v), v[0].clone()),
        ),
        // The ResNets' ops on [B, C, H * W] values: a 3x3 / 2 with TF's asymmetric "SAME"
        // padding, a 1x1, GroupNorm + affine + ReLU.
        ("conv2d 3x3/2", vec![[2, 4, 100], [6, 4, 9]], |v| {
            let x = v[0].clone().reshape([2, 4, 10, 10]);
            let w = v[1].clone().reshape([6, 4, 3, 3]);
            fused::conv2d(x, w, [2, 2], [(0, 1), (0, 1)]).reshape([2, 6, 25])
        }),
        ("conv2d 1x1", vec![[2, 8, 36], [1, 5, 8]], |v| {
            let x = v[0].clone().reshape([2, 8, 6, 6]);
            let w = v[1].clone().reshape([5, 8, 1, 1]);
            fused::conv2d(x, w, [1, 1], [(0, 0), (0, 0)]).reshape([2, 5, 36])
        }),
        ("group_norm", vec![[2, 8, 25], [1, 1, 8], [1, 1, 8]], |v| {
            let x = v[0].clone().reshape([2, 8, 5, 5]);
            let (g, b) = (v[1].clone().reshape([8]), v[2].clone().reshape([8]));
            fused::group_norm(x, g, b, 4, 1e-5, true).reshape([2, 8, 25])
        }),
    ];
    let mut rng = StdRng::seed_from_u64(9);
    for (name, shapes, op) in ops {
        let values: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| {
                (0..s.iter().product())
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect()
            })
            .collect();
        let run = |device: &Device| {
            let inputs: Vec<Tensor<3>> = values
                .iter()
                .zip(&shapes)
                .map(|(v, s)| {
                    Tensor::<3>::from_data(TensorData::new(v.clone(), *s), device).require_grad()
                })
                .collect();
            let y = op(inputs.clone());
            // A weighted sum, so that every output element's gradient differs.
            let n = y.dims().iter().product::<usize>();
            let wts: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
                .collect();
            let wts = Tensor::<3>::from_data(TensorData::new(wts, y.dims()), device);
            let grads = (y.clone() * wts).sum().backward();
            let mut out = vec![y.into_data().try_to_vec::<f32>().unwrap()];
            for x in &inputs {
                out.push(
                    x.grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap(),
                );
            }
            out
        };
        let a = run(&Device::flex().autodiff());
        let b = run(&device_from_name(device).unwrap().autodiff());
        for (i, (va, vb)) in a.iter().zip(&b).enumerate() {
            let what = if i == 0 {
                "output".to_string()
            } else {
                format!("gradient of input {}", i - 1)
            };
            let (d, at) = va
                .iter()
                .zip(vb)
                .map(|(x, y)| f64::from((x - y).abs()) / f64::from(x.abs()).max(1.0))
                .enumerate()
                .fold((0.0, 0), |m, (i, d)| if d > m.0 { (d, i) } else { m });
            assert!(
                d <= TOL,
                "{name} on {device}: {what} differs from Flex's by {d} at element {at} ({} vs {})",
                va[at],
                vb[at]
            );
        }
    }
}

/// The devices named in `VIT_TEST_DEVICES` (comma-separated), each checked like ndarray and
/// wgpu below; none when unset.
#[test]
fn listed_devices_train_as_on_flex() {
    let Ok(list) = std::env::var("VIT_TEST_DEVICES") else {
        eprintln!("VIT_TEST_DEVICES is not set: no extra device checked");
        return;
    };
    for device in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        trains_as_flex("ViT", vit(), device);
        trains_as_flex("hybrid", hybrid(), device);
        trains_as_flex("ResNet", resnet(), device);
        fused_ops_as_flex(device);
    }
}

#[cfg(feature = "ndarray")]
mod ndarray {
    use super::*;

    #[test]
    fn vit_trains_as_on_flex() {
        trains_as_flex("ViT", vit(), "ndarray");
    }

    #[test]
    fn hybrid_trains_as_on_flex() {
        trains_as_flex("hybrid", hybrid(), "ndarray");
    }

    #[test]
    fn resnet_trains_as_on_flex() {
        trains_as_flex("ResNet", resnet(), "ndarray");
    }

    #[test]
    fn fused_ops_equal_the_reference_ops() {
        fused_ops_as_flex("ndarray");
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    #[test]
    fn vit_trains_as_on_flex() {
        trains_as_flex("ViT", vit(), "wgpu");
    }

    #[test]
    fn hybrid_trains_as_on_flex() {
        trains_as_flex("hybrid", hybrid(), "wgpu");
    }

    #[test]
    fn resnet_trains_as_on_flex() {
        trains_as_flex("ResNet", resnet(), "wgpu");
    }

    #[test]
    fn fused_ops_equal_the_reference_ops() {
        fused_ops_as_flex("wgpu");
    }
}
