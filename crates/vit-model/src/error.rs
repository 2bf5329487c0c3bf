//! Errors of the model crate.

use std::path::PathBuf;

/// Everything the model crate reports instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum VitError {
    /// An input tensor does not have the shape the model was built for.
    #[error("input of shape {got:?} does not fit the model: expected {expected}")]
    InputShape { got: Vec<usize>, expected: String },

    /// An unknown preset name.
    #[error("unknown preset `{name}`; known presets: {known}")]
    UnknownPreset { name: String, known: String },

    /// A configuration that cannot describe a model.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),

    /// An unknown backend or device name.
    #[error("{0}")]
    Device(String),

    /// A weights file that could not be read, parsed or written.
    #[error("{path}: {message}")]
    WeightsFile { path: PathBuf, message: String },

    /// A state dict that does not match the model: every problem, by key.
    #[error("weights do not match the model:\n{}", .problems.join("\n"))]
    WeightsMismatch { problems: Vec<String> },

    /// Position-embedding resampling asked for something it cannot do.
    #[error("position-embedding resampling: {0}")]
    Resample(String),

    /// A model id that cannot be resolved in the Hugging Face cache, or a repo whose
    /// `config.json` does not describe a model of this crate.
    #[error("{0}")]
    Hub(String),
}
