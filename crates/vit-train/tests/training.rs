//! The training loop on real images: the loss falls, resume is exact, failures are clear.

mod common;

use common::*;
use vit_train::train::{RunOptions, Start, checkpoint, run};

#[test]
fn a_few_steps_lower_the_loss() {
    let _serial = serial();
    let dir = temp_dir("learn");
    let (_, config) = recipe(&dir, &["train.epochs=3", "data.augment.mixup_alpha=0.0"]);
    let summary = run(Start::New(config), RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 3 * 25);
    let first: f64 = summary.losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = summary.losses[summary.losses.len() - 5..]
        .iter()
        .sum::<f64>()
        / 5.0;
    assert!(last < first - 0.3, "loss {first:.3} -> {last:.3}");
    // Ten classes: chance is 10%. This one-block ViT learns slowly: timm's own, trained the
    // same way in PyTorch, is at 52% after 4 epochs.
    let test = summary.test.unwrap();
    assert_eq!(test.images, 200);
    assert!(test.top1 > 0.25, "test top-1 {}", test.top1);
    let run = dir.join("run");
    for file in [
        "metrics.jsonl",
        "config.toml",
        "curves.png",
        "checkpoints/last/model.safetensors",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let lines = vit_train::report::read_metrics(&run).unwrap();
    assert_eq!(lines.iter().filter(|l| l.split == "train").count(), 75);
    assert_eq!(lines.iter().filter(|l| l.split == "val").count(), 3);
    assert_eq!(lines.iter().filter(|l| l.split == "test").count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_continues_exactly() {
    let _serial = serial();
    // Dropout, DropPath, mixup and augmentation all on: every random draw must replay.
    let sets = ["train.epochs=2", "train.eval_every=10"];
    let straight_dir = temp_dir("straight");
    let (_, config) = recipe(&straight_dir, &sets);
    let straight = run(
        Start::New(config),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(straight.steps, 50);

    let split_dir = temp_dir("split");
    let (_, config) = recipe(&split_dir, &sets);
    let first = run(
        Start::New(config),
        RunOptions {
            stop_after: Some(20),
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.steps, 20);
    let second = run(
        Start::Resume(split_dir.join("run")),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(second.steps, 50);
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).cloned().collect();
    assert_eq!(resumed.len(), straight.losses.len());
    // Bit for bit: every reduction adds in a fixed order (none follows rayon's thread timing),
    // so the resumed run is the straight run, losses and weights.
    for (i, (a, b)) in straight.losses.iter().zip(&resumed).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "step {}: {a} vs {b}", i + 1);
    }
    let weights = |dir: &std::path::Path| {
        std::fs::read(dir.join("run/checkpoints/last/model.safetensors")).unwrap()
    };
    assert!(
        weights(&straight_dir) == weights(&split_dir),
        "the resumed run's weights differ from the straight run's"
    );
    std::fs::remove_dir_all(&straight_dir).unwrap();
    std::fs::remove_dir_all(&split_dir).unwrap();
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let dir = temp_dir("nan");
    let (_, config) = recipe(
        &dir,
        &[
            "train.lr=1e30",
            "train.warmup_steps=0",
            "train.eval_every=1",
            "train.clip_grad_norm=1e38",
        ],
    );
    let err = format!(
        "{:#}",
        run(Start::New(config), RunOptions::default())
            .err()
            .unwrap()
    );
    assert!(
        err.contains("the loss became") && err.contains("checkpoints/last"),
        "{err}"
    );
    let last = checkpoint::read_state(&dir.join("run/checkpoints/last")).unwrap();
    assert!(last.step >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_of_another_model_is_refused_by_key() {
    let _serial = serial();
    let dir = temp_dir("other");
    let (_, config) = recipe(&dir, &["train.max_steps=2"]);
    run(
        Start::New(config),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    let wider = recipe(&dir, &[])
        .1
        .model
        .config
        .as_vit()
        .unwrap()
        .clone()
        .with_embed_dim(48);
    let model = wider.init(&burn::tensor::Device::flex()).into();
    let err = format!(
        "{:#}",
        checkpoint::load_model(&dir.join("run/checkpoints/last"), model)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("cannot load the model of checkpoint")
            && err.contains("weights do not match the model"),
        "{err}"
    );
    assert!(
        err.contains("wrong shape for `cls_token`: file has [1, 1, 32], model expects [1, 1, 48]"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_existing_run_is_not_overwritten() {
    let _serial = serial();
    let dir = temp_dir("exists");
    let (_, config) = recipe(&dir, &["train.max_steps=1"]);
    run(
        Start::New(config.clone()),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    let err = format!(
        "{:#}",
        run(Start::New(config), RunOptions::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("already holds a run"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every float parameter's values, in visiting order.
fn param_values(model: &vit_model::Model) -> Vec<f32> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

#[test]
fn weight_average_matches_timm_model_ema_v3() {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::{Device, Tensor};
    use vit_train::train::ema::ModelEma;
    // `init_seeded` seeds and draws from the process-wide RNG that the other tests' runs use.
    let _serial = serial();

    /// Every parameter set to one value, as the fixture's weights are after each step.
    struct Fill(f64);
    impl ModuleMapper for Fill {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let v = self.0;
            p.map(|t| t.ones_like() * v)
        }
    }
    #[derive(serde::Deserialize)]
    struct Case {
        decay: f64,
        warmup: bool,
        decays: Vec<f64>,
        values: Vec<f64>,
    }
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_ema.json");
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = temp_dir("ema-timm");
    let config = recipe(&dir, &[]).1.model.config;
    let device = Device::flex();
    for case in cases {
        let model = config.init_seeded(1, &device).unwrap();
        // As timm's: the average starts as a copy of the initial model.
        let mut ema = ModelEma::new(&model, case.decay, case.warmup);
        for (k, (&decay, &value)) in case.decays.iter().zip(&case.values).enumerate() {
            let step = k + 1;
            assert!(
                (ema.decay_at(step) - decay).abs() < 1e-12,
                "decay {} warmup {}: step {step}: {} vs timm {decay}",
                case.decay,
                case.warmup,
                ema.decay_at(step)
            );
            let weights = model.clone().map(&mut Fill(step as f64));
            ema.update(&weights, step);
            let got = param_values(&ema.model);
            assert_eq!(got.len(), config.num_params());
            for v in got {
                assert!(
                    (f64::from(v) - value).abs() <= 1e-5 * value.abs(),
                    "decay {} warmup {}: step {step}: {v} vs timm {value}",
                    case.decay,
                    case.warmup
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weight_average_resumes_exactly_and_is_what_the_checkpoint_delivers() {
    let _serial = serial();
    let sets = [
        "train.epochs=1",
        "train.eval_every=10",
        "train.ema_decay=0.9",
        "train.ema_warmup=true",
    ];
    let options = |stop_after| RunOptions {
        stop_after,
        skip_test: true,
        ..Default::default()
    };
    let straight_dir = temp_dir("ema-straight");
    let (_, config) = recipe(&straight_dir, &sets);
    let straight = run(Start::New(config), options(None)).unwrap();
    let split_dir = temp_dir("ema-split");
    let (_, config) = recipe(&split_dir, &sets);
    run(Start::New(config.clone()), options(Some(10))).unwrap();
    run(Start::Resume(split_dir.join("run")), options(None)).unwrap();

    let device = burn::tensor::Device::flex();
    let average = |dir: &std::path::Path| {
        let last = dir.join("run/checkpoints/last");
        let state = checkpoint::read_state(&last).unwrap();
        checkpoint::load_for_inference(&last, &state, &device).unwrap()
    };
    let (a, b) = (
        param_values(&average(&straight_dir)),
        param_values(&average(&split_dir)),
    );
    assert_eq!(a.len(), b.len());
    // Bit for bit, as the trained weights are (resume_continues_exactly).
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "parameter value {i}: {x} vs {y}");
    }
    // The average is not the trained weights...
    let last = straight_dir.join("run/checkpoints/last");
    let trained =
        checkpoint::load_model(&last, config.model.config.try_init(&device).unwrap()).unwrap();
    let moved = a
        .iter()
        .zip(param_values(&trained))
        .filter(|(x, y)| (*x - y).abs() > 1e-4)
        .count();
    assert!(
        moved > a.len() / 2,
        "only {moved} of {} values differ",
        a.len()
    );
    // ...and is what the run validated and what `vit-train eval` evaluates.
    let (ok, stdout, stderr) = vit_train(&[
        "eval",
        "--checkpoint",
        straight_dir.join("run").to_str().unwrap(),
        // The tiny recipe validates on its test split.
        "--split",
        "test",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let loss = report["loss"].as_f64().unwrap();
    let val = straight.val.unwrap().loss;
    assert!(
        (loss - val).abs() <= 1e-5 * val,
        "eval loss {loss} vs the run's {val}"
    );
    std::fs::remove_dir_all(&straight_dir).unwrap();
    std::fs::remove_dir_all(&split_dir).unwrap();
}
