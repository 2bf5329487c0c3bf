//! WebDataset tar shards (`data.format = "webdataset"`): what timm's `--dataset wds/...` and
//! webdataset pipelines read. A sample is the members of one key in a shard (`KEY.jpg|jpeg|
//! png|webp`, `KEY.cls`, optionally `KEY.json`); images are read from inside the shards, never
//! unpacked. The shards' table of contents is read once at load ([`scan`]); a training epoch
//! takes the samples in a webdataset pipeline's order ([`order`]); `vit-train shards` writes
//! shards from an image folder ([`write`]) with an index beside them that `info` counts from.

pub mod order;
pub mod pattern;
pub mod scan;
pub mod write;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{ImageSet, Pixels};

/// Class names of a shard folder: `classes.txt` (one per line, in label order), as
/// `vit-train shards` writes it.
pub const CLASSES_FILE: &str = "classes.txt";

/// The index `vit-train shards` writes beside a split's shards (`PREFIX.index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardIndex {
    /// Each shard: file name (in the index's folder), samples, bytes.
    pub shards: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    pub file: String,
    pub samples: usize,
    pub bytes: u64,
}

/// The class names of `dir/classes.txt`, if there is one.
pub fn read_classes(dir: &Path) -> Result<Option<Vec<String>>> {
    let path = dir.join(CLASSES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(
        text.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    ))
}

/// The samples of the shards `pattern` names (relative to `root`), as a set of `shape`
/// (what the transforms make of them) with `classes`; the shard folder's `classes.txt` when
/// `classes` is `None`.
pub fn load(
    root: &Path,
    pattern: &str,
    shape: [usize; 3],
    classes: Option<Vec<String>>,
) -> Result<ImageSet> {
    let paths = scan::shard_paths(root, pattern)?;
    let folder = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    let classes = match classes {
        Some(c) => c,
        None => read_classes(&folder)?.with_context(|| {
            format!(
                "{}: no {CLASSES_FILE} beside the shards; name the classes with data.classes",
                folder.display()
            )
        })?,
    };
    let mut members = Vec::new();
    let mut labels = Vec::new();
    let mut shard_of = Vec::new();
    for (s, path) in paths.iter().enumerate() {
        for found in scan::scan(path)? {
            if found.label as usize >= classes.len() {
                bail!(
                    "shard {}: sample `{}` has class {} but there are {} classes",
                    path.display(),
                    found.key,
                    found.label,
                    classes.len()
                );
            }
            members.push(found.image);
            labels.push(found.label);
            shard_of.push(s as u32);
        }
    }
    if members.is_empty() {
        bail!(
            "the shards of `{pattern}` in {} hold no samples",
            root.display()
        );
    }
    ImageSet::with_pixels(Pixels::Shards { members, shard_of }, labels, shape, classes)
}

/// Whether a split name is a shard pattern rather than a folder (for `eval --data`).
pub fn is_shard_pattern(s: &str) -> bool {
    s.ends_with(".tar") || (s.contains(".tar") && s.contains('{'))
}

/// The sample counts of `pattern`'s shards from the index files beside them (`*.index.json`),
/// without reading a shard: (shards, samples), samples `None` when a shard is in no index.
pub fn count(root: &Path, pattern: &str) -> Result<(usize, Option<usize>)> {
    let paths = scan::shard_paths(root, pattern)?;
    let folder = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    let mut known = std::collections::HashMap::new();
    for e in
        std::fs::read_dir(&folder).with_context(|| format!("cannot read {}", folder.display()))?
    {
        let p: PathBuf = e?.path();
        if p.to_string_lossy().ends_with(".index.json") {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let index: ShardIndex = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a shard index", p.display()))?;
            for s in index.shards {
                known.insert(folder.join(&s.file), s.samples);
            }
        }
    }
    let samples: Option<usize> = paths.iter().map(|p| known.get(p).copied()).sum();
    Ok((paths.len(), samples))
}
