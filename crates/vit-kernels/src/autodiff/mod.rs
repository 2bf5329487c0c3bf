//! The fused ops under Burn's autodiff: the forward runs the inner backend's kernel, the
//! backward its hand-written gradient kernel (one node each, where Burn's decompositions of
//! LayerNorm and softmax record eight to ten).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::{Backend, tensor::FloatTensor};

use super::VitOps;

mod conv;

impl<B: Backend + VitOps, C: CheckpointStrategy> VitOps for Autodiff<B, C> {
    fn vit_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl<B: Backend + VitOps> Backward<B, 1> for Gelu {
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::vit_gelu_backward(x, grad)
                });
            }
        }

        match Gelu.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::vit_gelu(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_gelu(x.into_primitive())),
        }
    }

    fn vit_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        super::gelu_backward_composed::<Self>(x, grad)
    }

    fn vit_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNorm;

        impl<B: Backend + VitOps> Backward<B, 3> for LayerNorm {
            /// Input, gamma, epsilon.
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, eps) = ops.state;
                let (dx, dgamma, dbeta) = B::vit_layer_norm_backward(x, gamma, grad, eps);
                for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        match LayerNorm
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (input, g) = (x.primitive().clone(), gamma.primitive().clone());
                let output =
                    B::vit_layer_norm(input.clone(), g.clone(), beta.into_primitive(), eps);
                prep.finish((input, g, eps), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_layer_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
            )),
        }
    }

    fn vit_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        super::layer_norm_backward_composed::<Self>(x, gamma, grad, eps)
    }

    fn vit_softmax(x: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Softmax;

        impl<B: Backend + VitOps> Backward<B, 1> for Softmax {
            /// Output, scale.
            type State = (B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (y, scale) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::vit_softmax_backward(y, grad, scale)
                });
            }
        }

        match Softmax.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // The backward needs only the output: the scores' buffer can hold it.
                let y = B::vit_softmax(x.into_primitive(), scale);
                prep.finish((y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_softmax(x.into_primitive(), scale)),
        }
    }

    fn vit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        linear::<B, C>(x, weight, bias, false)
    }

    fn vit_linear_gelu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        linear::<B, C>(x, weight, bias, true)
    }

    fn vit_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        super::linear_backward_composed::<Self>(x, weight, grad)
    }

    fn vit_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Attention;

        impl<B: Backend + VitOps> Backward<B, 1> for Attention {
            /// qkv, attention weights, heads.
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (qkv, weights, heads) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::vit_attention_backward(qkv, weights, grad, heads)
                });
            }
        }

        match Attention
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = qkv.primitive().clone();
                let (out, weights) = B::vit_attention_with_weights(input.clone(), heads);
                prep.finish((input, weights, heads), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_attention(qkv.into_primitive(), heads)),
        }
    }

    fn vit_attention_with_weights(
        qkv: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        super::attention_composed::<Self>(qkv, heads)
    }

    fn vit_attention_backward(
        qkv: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        super::attention_backward_composed::<Self>(qkv, weights, grad, heads)
    }

    fn vit_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        super::softmax_backward_composed::<Self>(y, grad, scale)
    }
}

/// Linear, with `gelu` followed by GELU, as one autodiff node.
fn linear<B: Backend + VitOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    gelu: bool,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct Linear;

    impl<B: Backend + VitOps> Backward<B, 3> for Linear {
        /// Input, weight and, when GELU follows, the pre-activation `x W + b`.
        type State = (
            B::FloatTensorPrimitive,
            B::FloatTensorPrimitive,
            Option<B::FloatTensorPrimitive>,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x, node_w, node_b] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (x, weight, pre) = ops.state;
            let grad = match pre {
                Some(pre) => B::vit_gelu_backward(pre, grad),
                None => grad,
            };
            let (dx, dw, db) = B::vit_linear_backward(x, weight, grad);
            for (node, g) in [(node_x, dx), (node_w, dw), (node_b, db)] {
                if let Some(node) = node {
                    grads.register::<B>(node.id, g);
                }
            }
        }
    }

    match Linear
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (input, w) = (x.primitive().clone(), weight.primitive().clone());
            let output = B::vit_linear(input.clone(), w.clone(), bias.into_primitive());
            if gelu {
                // The backward needs the pre-activation, so training runs the two kernels
                // (the GELU's output is a buffer of its own either way).
                // The clone keeps the kernel from writing GELU into the pre-activation's buffer.
                let y = B::vit_gelu(output.clone());
                prep.finish((input, w, Some(output)), y)
            } else {
                prep.finish((input, w, None), output)
            }
        }
        OpsKind::UnTracked(prep) => {
            let (x, w, b) = (
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            );
            prep.finish(if gelu {
                B::vit_linear_gelu(x, w, b)
            } else {
                B::vit_linear(x, w, b)
            })
        }
    }
}
