//! vit-train: data sets, augmentation, the training loop, evaluation and prediction for the
//! Vision Transformers of `vit-model`; the `vit-train` binary is a thin CLI over this.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod data;
pub mod devices;
pub mod eval;
pub mod info;
pub mod inspect;
pub mod models;
pub mod plot;
pub mod predict;
pub mod report;
pub mod tensorboard;
pub mod train;
