//! The shape preconditions of the fused ops, checked at every public entry point (the
//! `fused::*` functions and each backend's [`VitOps`](super::VitOps) methods) with `assert!`s
//! that hold in release builds, as burn-nn's `assert_shape!` does: the Flex kernels index raw
//! buffers from these shapes, so a shape they do not hold for must stop there, not read out of
//! bounds or hand out memory no kernel wrote.

/// The last axis of `shape`.
fn last(op: &str, what: &str, shape: &[usize]) -> usize {
    assert!(
        !shape.is_empty(),
        "{op}: {what} must have at least one axis, got a scalar"
    );
    shape[shape.len() - 1]
}

/// `x` `[..., K]`, weight `[K, N]`, bias `[N]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn linear(op: &str, x: &[usize], weight: &[usize], bias: Option<&[usize]>) {
    assert!(
        weight.len() == 2,
        "{op}: the weight must be [K, N], got {weight:?}"
    );
    let k = last(op, "x", x);
    assert!(
        k == weight[0],
        "{op}: x's last axis ({k}, shape {x:?}) must equal the weight's input width \
         ({}, shape {weight:?})",
        weight[0]
    );
    if let Some(bias) = bias {
        assert!(
            bias == [weight[1]],
            "{op}: the bias must be [{}] for a weight of shape {weight:?}, got {bias:?}",
            weight[1]
        );
    }
}

/// [`linear`] for the backward: `grad` is the output's shape, `[..., N]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn linear_backward(op: &str, x: &[usize], weight: &[usize], grad: &[usize]) {
    linear(op, x, weight, None);
    let mut want = x.to_vec();
    *want.last_mut().expect("checked by linear") = weight[1];
    assert!(
        grad == want,
        "{op}: the output gradient must be {want:?}, got {grad:?}"
    );
}

/// `qkv` `[B, S, 3D]` with `heads` dividing D; returns (B, S, D).
///
/// # Panics
/// When `qkv` is not 3-D, its width is not three times a multiple of `heads`, or `heads` is 0.
pub fn attention(op: &str, qkv: &[usize], heads: usize) -> [usize; 3] {
    assert!(qkv.len() == 3, "{op}: qkv must be [B, S, 3D], got {qkv:?}");
    assert!(heads > 0, "{op}: heads must be positive");
    let w = qkv[2];
    assert!(
        w.is_multiple_of(3) && (w / 3).is_multiple_of(heads),
        "{op}: qkv's width ({w}) must be 3 * D with D divisible by heads ({heads})"
    );
    [qkv[0], qkv[1], w / 3]
}

/// [`attention`] for the backward: `weights` `[B, heads, S, S]`, `grad` `[B, S, D]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn attention_backward(
    op: &str,
    qkv: &[usize],
    weights: &[usize],
    grad: &[usize],
    heads: usize,
) {
    let [b, s, d] = attention(op, qkv, heads);
    assert!(
        weights == [b, heads, s, s],
        "{op}: the attention weights must be {:?}, got {weights:?}",
        [b, heads, s, s]
    );
    assert!(
        grad == [b, s, d],
        "{op}: the output gradient must be {:?}, got {grad:?}",
        [b, s, d]
    );
}

/// `x` `[..., D]` with `gamma` (and `beta`) `[D]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn layer_norm(op: &str, x: &[usize], gamma: &[usize], beta: Option<&[usize]>) {
    let d = last(op, "x", x);
    assert!(
        gamma == [d],
        "{op}: gamma must be [{d}] for x of shape {x:?}, got {gamma:?}"
    );
    if let Some(beta) = beta {
        assert!(
            beta == [d],
            "{op}: beta must be [{d}] for x of shape {x:?}, got {beta:?}"
        );
    }
}

/// Two tensors of one shape (an input and its gradient), at least 1-D.
///
/// # Panics
/// When the shapes differ.
pub fn same(op: &str, a: &[usize], b: &[usize]) {
    last(op, "the input", a);
    assert!(
        a == b,
        "{op}: the gradient must have the input's shape {a:?}, got {b:?}"
    );
}

/// At least one axis.
///
/// # Panics
/// For a scalar.
pub fn rows(op: &str, x: &[usize]) {
    last(op, "x", x);
}

/// A convolution's `x` `[B, C, H, W]` and `weight` `[O, C, kh, kw]` with a positive stride and a
/// kernel that fits the padded input; returns the output's shape `[B, O, Ho, Wo]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn conv2d(
    op: &str,
    x: &[usize],
    weight: &[usize],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> [usize; 4] {
    assert!(x.len() == 4, "{op}: x must be [B, C, H, W], got {x:?}");
    assert!(
        weight.len() == 4 && weight[1] == x[1],
        "{op}: the weight must be [O, {}, kh, kw] for x of shape {x:?}, got {weight:?}",
        x[1]
    );
    assert!(
        stride[0] > 0 && stride[1] > 0,
        "{op}: the stride must be positive, got {stride:?}"
    );
    let out = |axis: usize| {
        let (size, (before, after)) = (x[axis + 2], padding[axis]);
        let k = weight[axis + 2];
        assert!(
            k > 0 && size + before + after >= k,
            "{op}: a kernel of {k} does not fit axis {} of x ({size} with padding \
             {before} + {after})",
            axis + 2
        );
        (size + before + after - k) / stride[axis] + 1
    };
    [x[0], weight[0], out(0), out(1)]
}

/// [`conv2d`] for the backward: `grad` is the output's shape.
///
/// # Panics
/// When the shapes do not fit together.
pub fn conv2d_backward(
    op: &str,
    x: &[usize],
    weight: &[usize],
    grad: &[usize],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) {
    let want = conv2d(op, x, weight, stride, padding);
    assert!(
        grad == want,
        "{op}: the output gradient must be {want:?}, got {grad:?}"
    );
}

/// GroupNorm's `x` `[B, C, ...]` with `groups` dividing C and `gamma`, `beta` `[C]`.
///
/// # Panics
/// When the shapes do not fit together.
pub fn group_norm(op: &str, x: &[usize], gamma: &[usize], beta: &[usize], groups: usize) {
    assert!(x.len() >= 2, "{op}: x must be [B, C, ...], got {x:?}");
    let c = x[1];
    assert!(
        groups > 0 && c.is_multiple_of(groups),
        "{op}: {groups} groups do not divide the {c} channels of x (shape {x:?})"
    );
    assert!(
        gamma == [c] && beta == [c],
        "{op}: gamma and beta must be [{c}] for x of shape {x:?}, got {gamma:?} and {beta:?}"
    );
}
