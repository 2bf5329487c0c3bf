//! CIFAR-10 / CIFAR-100 binary files (the "binary version" from the CIFAR site).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::ImageSet;

const PIXELS: usize = 3 * 32 * 32;

/// Parses records of `label_bytes` label bytes + 3072 pixel bytes (CHW); the last label byte is
/// the class (CIFAR-100 stores coarse then fine).
pub fn parse(bytes: &[u8], path: &Path, label_bytes: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        bail!(
            "{}: {} bytes is not a whole number of {record}-byte CIFAR records (truncated or not \
             a CIFAR binary file)",
            path.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / record;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for rec in bytes.chunks_exact(record) {
        labels.push(u32::from(rec[label_bytes - 1]));
        images.extend_from_slice(&rec[label_bytes..]);
    }
    Ok((images, labels))
}

/// Loads the train or test split of CIFAR-10 (`cifar100 = false`) or CIFAR-100.
pub fn load(root: &Path, train: bool, cifar100: bool, classes: Vec<String>) -> Result<ImageSet> {
    let files: Vec<String> = match (cifar100, train) {
        (false, true) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        (false, false) => vec!["test_batch.bin".into()],
        (true, true) => vec!["train.bin".into()],
        (true, false) => vec!["test.bin".into()],
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let path = root.join(&f);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "missing data file {} (see datasets/README.md)",
                path.display()
            )
        })?;
        let (i, l) = parse(&bytes, &path, if cifar100 { 2 } else { 1 })?;
        images.extend(i);
        labels.extend(l);
    }
    ImageSet::new(images, labels, [3, 32, 32], classes)
        .with_context(|| format!("CIFAR data in {}", root.display()))
}
