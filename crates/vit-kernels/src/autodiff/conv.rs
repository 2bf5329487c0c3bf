//! The convolution ops under Burn's autodiff: one node each, whose backward runs the inner
//! backend's gradient kernel.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Backend, tensor::FloatTensor};

use crate::conv::{
    ConvOps, conv2d_backward_composed, conv2d_weight_backward_composed,
    group_norm_backward_composed,
};

type Padding = [(usize, usize); 2];

impl<B: Backend + ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn vit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: Padding,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv2d;

        impl<B: Backend + ConvOps> Backward<B, 2> for Conv2d {
            /// Input, weight, stride, padding.
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                [usize; 2],
                Padding,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_w] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, stride, padding) = ops.state;
                // A network's first convolution reads the images, which need no gradient:
                // the input's half of the backward is skipped.
                let (dx, dw) = match node_x {
                    Some(_) => {
                        let (dx, dw) = B::vit_conv2d_backward(x, weight, grad, stride, padding);
                        (Some(dx), dw)
                    }
                    None => (
                        None,
                        B::vit_conv2d_weight_backward(x, weight, grad, stride, padding),
                    ),
                };
                if let (Some(node), Some(dx)) = (node_x, dx) {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_w {
                    grads.register::<B>(node.id, dw);
                }
            }
        }

        match Conv2d
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (input, w) = (x.primitive().clone(), weight.primitive().clone());
                let output = B::vit_conv2d(input.clone(), w.clone(), stride, padding);
                prep.finish((input, w, stride, padding), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
            )),
        }
    }

    fn vit_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: Padding,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        conv2d_backward_composed::<Self>(x, weight, grad, stride, padding)
    }

    fn vit_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: Padding,
    ) -> FloatTensor<Self> {
        conv2d_weight_backward_composed::<Self>(x, weight, grad, stride, padding)
    }

    fn vit_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GroupNorm;

        impl<B: Backend + ConvOps> Backward<B, 3> for GroupNorm {
            /// Input, gamma, beta, groups, epsilon, ReLU.
            type State = (
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                usize,
                f64,
                bool,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, beta, groups, eps, relu) = ops.state;
                let (dx, dgamma, dbeta) =
                    B::vit_group_norm_backward(x, gamma, beta, grad, groups, eps, relu);
                for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        match GroupNorm
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (input, g, b) = (
                    x.primitive().clone(),
                    gamma.primitive().clone(),
                    beta.primitive().clone(),
                );
                let output =
                    B::vit_group_norm(input.clone(), g.clone(), b.clone(), groups, eps, relu);
                prep.finish((input, g, b, groups, eps, relu), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vit_group_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                groups,
                eps,
                relu,
            )),
        }
    }

    fn vit_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        group_norm_backward_composed::<Self>(x, gamma, beta, grad, groups, eps, relu)
    }
}
