//! Reading a shard's table of contents: the tar members (`KEY.EXT`, webdataset's rule: the
//! key is the name up to the first dot of its last component) grouped into samples by key,
//! each sample's image member (`jpg`, `jpeg`, `png`, `webp`) located by offset and size, and
//! its class (`KEY.cls`, an integer as text). Member data other than the `.cls` text is
//! skipped by seeking, not read.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::data::Member;

/// Image extensions, as webdataset's decoders take them (case-insensitive here).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// webdataset's `base_plus_ext`: (`KEY`, `EXT`) of a member name, or `None` for a name with
/// no extension.
pub fn key_and_ext(name: &str) -> Option<(&str, &str)> {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[base_start..].find('.')? + base_start;
    Some((&name[..dot], &name[dot + 1..]))
}

/// One sample as found in a shard.
pub struct Found {
    pub key: String,
    pub image: Member,
    pub label: u32,
}

/// The samples of `shard`, in the shard's order.
pub fn scan(shard: &Path) -> Result<Vec<Found>> {
    let file =
        File::open(shard).with_context(|| format!("cannot open shard {}", shard.display()))?;
    let shared = Arc::new(shard.to_path_buf());
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut found = Vec::new();
    // The sample being read: its key, image member and class.
    let mut current: Option<(String, Option<Member>, Option<u32>)> = None;
    let finish = |cur: Option<(String, Option<Member>, Option<u32>)>, found: &mut Vec<Found>| {
        let Some((key, image, label)) = cur else {
            return Ok(());
        };
        match (image, label) {
            (Some(image), Some(label)) => {
                found.push(Found { key, image, label });
                Ok(())
            }
            (None, _) => bail!(
                "shard {}: sample `{key}` has no image (one of .{})",
                shard.display(),
                IMAGE_EXTENSIONS.join(", .")
            ),
            (_, None) => bail!(
                "shard {}: sample `{key}` has no .cls (its class index)",
                shard.display()
            ),
        }
    };
    let entries = archive
        .entries_with_seek()
        .with_context(|| format!("cannot read shard {}", shard.display()))?;
    for entry in entries {
        let mut entry =
            entry.with_context(|| format!("shard {} is not a valid tar file", shard.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some((key, ext)) = key_and_ext(&name) else {
            continue;
        };
        // webdataset's own meta entries (`__key__`, ...) are not samples.
        if key.rsplit('/').next().is_some_and(|b| b.starts_with("__")) {
            continue;
        }
        if current.as_ref().is_none_or(|c| c.0 != key) {
            finish(current.take(), &mut found)?;
            current = Some((key.to_string(), None, None));
        }
        let cur = current.as_mut().expect("set above");
        let lower = ext.to_ascii_lowercase();
        if IMAGE_EXTENSIONS.contains(&lower.as_str()) && cur.1.is_none() {
            cur.1 = Some(Member {
                shard: shared.clone(),
                offset: entry.raw_file_position(),
                size: entry.size(),
                name: name.clone().into_boxed_str(),
            });
        } else if lower == "cls" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("shard {}: cannot read {name}", shard.display()))?;
            let label = text.trim().parse::<u32>().with_context(|| {
                format!(
                    "shard {}: {name} holds `{}`, not a class index",
                    shard.display(),
                    text.trim()
                )
            })?;
            cur.2 = Some(label);
        }
    }
    finish(current, &mut found)?;
    Ok(found)
}

/// The shards of a split: `pattern` expanded (relative to `root` unless absolute), each one
/// an existing file.
pub fn shard_paths(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let names = super::pattern::expand(pattern)?;
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        bail!(
            "shard {} (of `{pattern}`, {} shards) does not exist",
            missing.display(),
            paths.len()
        );
    }
    Ok(paths)
}
