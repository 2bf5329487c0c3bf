//! Fuzzing the readers of weights files from outside: safetensors (header and data), PyTorch
//! `.pth` / `.bin` (zip + pickle), NumPy `.npz` (zip + npy), and the translation of their
//! contents (timm / HF / JAX names, any shapes) into a model. Seeds are the real fixture files;
//! each case is a mutated copy loaded with `load_pretrained`, which must return `Ok` or an
//! error naming the file — never panic. Structure-aware cases rewrite a real checkpoint's
//! arrays with other shapes (the `.npz` with 2-D conv kernels that used to index out of
//! bounds), written as safetensors under the same names, so that format detection sends them
//! down the same translation.
//!
//! The bounded run here is part of the tests; a longer one: `FUZZ_CASES=20000 cargo test
//! --release -p vit-model --test fuzz` (RELIABILITY.md records what was run).

mod common;
#[path = "common/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Device, TensorData};
use common::{fixture, token_config};
use mutate::{apply, cases, edits};
use npyz::WriterBuilder;
use proptest::prelude::*;
use vit_model::weights::{StateDict, read_container, write_safetensors};
use vit_model::{PretrainedOptions, VitError, load_pretrained};

/// A fresh path with the extension `ext` (the reader is chosen by extension).
fn temp_path(ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("vit-model-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("case{}.{ext}", N.fetch_add(1, Ordering::Relaxed)))
}

/// Loads `path` into the token_32 model (and, as it is, with its own head); an error must
/// name the file.
fn load_both_ways(path: &Path) {
    let device = Device::flex();
    for options in [
        PretrainedOptions::default(),
        PretrainedOptions {
            new_head: Some(3),
            ..Default::default()
        },
    ] {
        match load_pretrained(&token_config(), path, &options, &device) {
            Ok(_) => {}
            Err(e @ VitError::WeightsFile { .. }) => {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}")
            }
            // Mismatches and resampling errors come from a file that parsed.
            Err(VitError::WeightsMismatch { .. } | VitError::Resample(_)) => {}
            Err(VitError::InvalidConfig(_)) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
}

fn fuzz_bytes(seed: &str, ext: &str, mutated: &[mutate::Edit]) {
    let bytes = std::fs::read(fixture(seed)).unwrap();
    let path = temp_path(ext);
    std::fs::write(&path, apply(&bytes, mutated)).unwrap();
    load_both_ways(&path);
    std::fs::remove_file(&path).unwrap();
}

/// Mutates one member of a zip archive (a `.pth`'s pickle or a tensor's bytes, an `.npz`'s
/// `.npy` header or data) and writes the archive again, stored, with valid CRCs: byte edits of
/// the archive itself mostly stop at its checksums, this reaches the parsers behind them.
fn fuzz_zip_member(seed: &str, ext: &str, member: usize, mutated: &[mutate::Edit]) {
    use std::io::{Read, Write};
    let mut archive = zip::ZipArchive::new(std::fs::File::open(fixture(seed)).unwrap()).unwrap();
    let member = member % archive.len();
    let path = temp_path(ext);
    let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        if i == member {
            bytes = apply(&bytes, mutated);
        }
        out.start_file(name, stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    load_both_ways(&path);
    std::fs::remove_file(&path).unwrap();
}

/// A structural change of one array of a real checkpoint.
#[derive(Clone, Debug)]
enum Change {
    Drop(usize),
    /// Another shape (axes of 0..6), filled with ones.
    Reshape(usize, Vec<usize>),
    /// The same values under the shape of another array of the file, when the counts agree.
    Swap(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<usize>().prop_map(Change::Drop),
        (any::<usize>(), prop::collection::vec(0usize..6, 0..5))
            .prop_map(|(i, s)| Change::Reshape(i, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Change::Swap(i, j)),
    ]
}

fn restructure(mut dict: StateDict, changes: &[Change]) -> StateDict {
    for c in changes {
        let keys: Vec<String> = dict.keys().cloned().collect();
        if keys.is_empty() {
            break;
        }
        let key = |i: usize| keys[i % keys.len()].clone();
        match c {
            Change::Drop(i) => {
                dict.remove(&key(*i));
            }
            Change::Reshape(i, shape) => {
                let n = shape.iter().product::<usize>();
                dict.insert(key(*i), TensorData::new(vec![1.0f32; n], shape.clone()));
            }
            Change::Swap(i, j) => {
                let (a, b) = (key(*i), key(*j));
                let shape = dict[&b].shape().to_vec();
                let t = dict[&a].clone();
                if t.num_elements() == shape.iter().product::<usize>() {
                    let values = t.convert::<f32>().try_into_vec::<f32>().unwrap();
                    dict.insert(a, TensorData::new(values, shape));
                }
            }
        }
    }
    dict
}

fn fuzz_structure(seed: &str, changes: &[Change]) {
    let dict = read_container(&fixture(seed)).unwrap();
    let path = temp_path("safetensors");
    write_safetensors(&restructure(dict, changes), &path).unwrap();
    load_both_ways(&path);
    std::fs::remove_file(&path).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    #[test]
    fn safetensors_bytes(e in edits(), hf in any::<bool>()) {
        let seed = if hf { "hf_vit.model.safetensors" } else { "token_32.model.safetensors" };
        fuzz_bytes(seed, "safetensors", &e);
    }

    #[test]
    fn pytorch_bytes(e in edits(), hf in any::<bool>()) {
        let seed = if hf { "hf_vit_base.pytorch_model.bin" } else { "token_32.model.pth" };
        fuzz_bytes(seed, "pth", &e);
    }

    #[test]
    fn npz_bytes(e in edits()) {
        fuzz_bytes("token_32.jax.npz", "npz", &e);
    }

    #[test]
    fn pth_members(e in edits(), member in any::<usize>(), pickle in any::<bool>()) {
        // Half the cases edit the pickle (member 0), the rest any member.
        fuzz_zip_member("token_32.model.pth", "pth", if pickle { 0 } else { member }, &e);
    }

    #[test]
    fn npz_members(e in edits(), member in any::<usize>()) {
        fuzz_zip_member("token_32.jax.npz", "npz", member, &e);
    }

    #[test]
    fn shapes_of_every_format(
        changes in prop::collection::vec(change(), 1..6),
        which in 0usize..3,
    ) {
        let seed = ["token_32.jax.npz", "hf_vit.model.safetensors", "token_32.model.safetensors"];
        fuzz_structure(seed[which], &changes);
    }
}

/// Writes `dict` as NumPy's `np.savez` does (f32 arrays, C order).
fn write_npz(dict: &StateDict, path: &Path) {
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    for (name, t) in dict {
        let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
        let values = t.clone().convert::<f32>().try_into_vec::<f32>().unwrap();
        npz.array::<f32>(name, Default::default())
            .unwrap()
            .default_dtype()
            .shape(&shape)
            .begin_nd()
            .unwrap()
            .extend(values)
            .unwrap();
    }
}

/// The case from the issue: a JAX `.npz` whose arrays have unexpected shapes (here the
/// patch-embedding kernel 2-D, an attention kernel 2-D) used to panic with `index out of
/// bounds` in the layout code; now each gives an error naming the file and the array.
#[test]
fn npz_arrays_of_the_wrong_rank_are_named() {
    for (array, shape) in [
        ("embedding/kernel", vec![2usize, 3]),
        (
            "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel",
            vec![48, 48],
        ),
        (
            "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel",
            vec![48],
        ),
    ] {
        let mut dict = read_container(&fixture("token_32.jax.npz")).unwrap();
        let n = shape.iter().product::<usize>();
        dict.insert(array.into(), TensorData::new(vec![0.0f32; n], shape));
        let path = temp_path("npz");
        write_npz(&dict, &path);
        let err = load_pretrained(
            &token_config(),
            &path,
            &PretrainedOptions::default(),
            &Device::flex(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&*path.to_string_lossy()) && err.contains(array),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
