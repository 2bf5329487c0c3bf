//! Checks an imported checkpoint against a reference's own output:
//! `check_features WEIGHTS PRESET HxW RESAMPLE REFERENCE [TOL]` loads WEIGHTS (any format)
//! into PRESET at HxW (position embeddings resampled with RESAMPLE), runs
//! `forward_features` on REFERENCE's `input` and compares with its `last_hidden_state`.
//! Exits non-zero when the largest difference exceeds TOL (default 1e-4).
//! Used by `cargo xtask weights dinov2-s14`.

use std::path::Path;
use std::process::ExitCode;

use burn::tensor::{Device, Tensor};
use vit_model::weights::read_safetensors;
use vit_model::{PretrainedOptions, VitConfig, load_pretrained};

fn run(args: &[String]) -> Result<f32, String> {
    let [weights, preset, size, resample, reference, rest @ ..] = args else {
        return Err("usage: check_features WEIGHTS PRESET HxW RESAMPLE REFERENCE [TOL]".into());
    };
    let tol: f32 = match rest.first() {
        Some(t) => t
            .parse()
            .map_err(|_| format!("TOL `{t}` is not a number"))?,
        None => 1e-4,
    };
    let (h, w) = size
        .split_once('x')
        .and_then(|(h, w)| Some((h.parse().ok()?, w.parse().ok()?)))
        .ok_or_else(|| format!("image size `{size}`: expected HxW, e.g. 224x224"))?;
    let config = VitConfig::preset(preset)
        .map_err(|e| e.to_string())?
        .with_image_size([h, w]);
    let options = PretrainedOptions {
        resample: resample
            .parse()
            .map_err(|e: vit_model::VitError| e.to_string())?,
        ..Default::default()
    };
    let device = Device::flex();
    let model = load_pretrained(&config, Path::new(weights), &options, &device)
        .map_err(|e| e.to_string())?;
    let reference = read_safetensors(Path::new(reference)).map_err(|e| e.to_string())?;
    let get = |k: &str| {
        reference
            .get(k)
            .cloned()
            .ok_or_else(|| format!("{reference:?} has no `{k}`"))
    };
    let input = Tensor::<4>::from_data(get("input")?, &device);
    let want = get("last_hidden_state")?
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let got = model
        .forward_features(input)
        .map_err(|e| e.to_string())?
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    if got.len() != want.len() {
        return Err(format!(
            "{} values, reference has {}",
            got.len(),
            want.len()
        ));
    }
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    println!("last_hidden_state: max |ours - reference| = {worst:e} (tolerance {tol:e})");
    if worst > tol {
        return Err(format!("difference {worst:e} exceeds {tol:e}"));
    }
    Ok(worst)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
