//! The training loop: per-step schedule, gradient accumulation, global-norm clipping,
//! validation, checkpoints, resume.

pub mod checkpoint;
pub mod clip;
pub mod ema;
pub mod optim;
pub mod schedule;
pub mod step;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use vit_model::{PretrainedOptions, device_from_name, load_pretrained, parse_device_name};

use crate::config::Config;
use crate::data::loader::{Loader, Mode, mix_seed, plan};
use crate::data::transforms::Transform;
use crate::data::{ImageSet, load_splits};
use crate::eval::{EvalReport, evaluate};
use crate::report::{MetricLine, Metrics, Progress};
use checkpoint::LoopState;

/// What a finished run reports.
pub struct Summary {
    pub steps: usize,
    pub val: Option<EvalReport>,
    pub test: Option<EvalReport>,
    pub seconds: f64,
    pub dir: PathBuf,
    /// Training loss of each step run in this process (for tests of resume).
    pub losses: Vec<f64>,
    /// Image files left out as unreadable (`data.on_bad_image = "skip"`), each once: why,
    /// naming the file.
    pub skipped: Vec<String>,
}

/// Options of a run beyond its recipe.
#[derive(Default, Clone)]
pub struct RunOptions {
    /// Continue from this checkpoint (or run folder).
    pub resume: Option<PathBuf>,
    /// Stop after this many steps in total (the schedule still spans the whole run).
    pub stop_after: Option<usize>,
    /// Skip the final test-set evaluation.
    pub skip_test: bool,
    /// Run on this device instead of the recipe's `train.device` (a device name, as
    /// [`vit_model::device`] lists them): a resumed run moves to it, and its checkpoints
    /// record it from then on.
    pub device: Option<String>,
}

/// Total optimiser steps of a run and steps per epoch.
pub fn step_counts(config: &Config, train_len: usize) -> Result<(usize, usize)> {
    let t = &config.train;
    let per_epoch = train_len / t.batch_size;
    if per_epoch == 0 {
        bail!(
            "train.batch_size {} is larger than the training set ({train_len} images)",
            t.batch_size
        );
    }
    let total = per_epoch * t.epochs;
    Ok((t.max_steps.map_or(total, |m| m.min(total)), per_epoch))
}

/// Trains as the recipe says; with `resume`, continues a run exactly where it stopped.
pub fn train(config: Config, options: RunOptions) -> Result<Summary> {
    let (mut config, resume_dir, state) = match &options.resume {
        Some(path) => {
            let dir = checkpoint::resolve(path)?;
            let state = checkpoint::read_state(&dir)?;
            let mut config = state.config.clone();
            // A run folder that was moved or renamed continues where it is now.
            if let Some(run) = checkpoint::run_folder(&dir) {
                config.output.dir = run;
            }
            (config, Some(dir), Some(state))
        }
        None => {
            // A recipe built in code has not been through `Config::load`'s checks.
            config.check()?;
            (config, None, None)
        }
    };
    if let Some(name) = &options.device {
        parse_device_name(name).context("--device")?;
        config.train.device = name.clone();
    }
    let t = config.train.clone();
    let device = device_from_name(&t.device)?;
    let vit = config.model.config.clone();
    let splits = load_splits(&config.data, &vit, t.seed)?;
    let out = config.output.dir.clone();
    if resume_dir.is_none() && out.join("metrics.jsonl").exists() {
        bail!(
            "{} already holds a run (metrics.jsonl); choose another output.dir or --resume it",
            out.display()
        );
    }
    let ad = device.clone().autodiff();
    ad.seed(t.seed);
    // Everything a resume reads is read before anything in the run folder is written: a
    // checkpoint that cannot be read leaves the run as it was.
    let mut model = match (&resume_dir, &config.finetune) {
        (Some(dir), _) => checkpoint::load_model(dir, vit.try_init(&ad)?)?,
        (None, Some(ft)) => {
            let options = PretrainedOptions {
                format: ft.weights_format,
                resample: ft.posemb_resample,
                new_head: Some(vit.num_classes),
            };
            let model = load_pretrained(&vit, &ft.weights, &options, &ad)
                .with_context(|| "finetune.weights".to_string())?;
            // Record the architecture as loaded (LayerScale, qkv bias, epsilon come from the
            // checkpoint), so that resume, eval and predict rebuild exactly this model.
            config.model.config = model.config.clone();
            model
        }
        // Drawn on the host: one seed, one initial model, whatever the device.
        (None, None) => vit.init_seeded(t.seed, &ad)?,
    };
    if config.finetune.as_ref().is_some_and(|f| f.freeze_backbone) {
        model = optim::freeze_backbone(model);
    }
    let vit = model.config.clone();
    let mut optim = optim::build(&t, &model);
    if let Some(dir) = &resume_dir {
        optim = checkpoint::load_optimizer(dir, optim)?;
    }
    let mut ema = match (t.ema_decay, &resume_dir) {
        (None, _) => None,
        (Some(decay), None) => Some(ema::ModelEma::new(&model, decay, t.ema_warmup)),
        (Some(decay), Some(dir)) => Some(ema::ModelEma {
            model: checkpoint::load_ema(dir, vit.try_init(&device)?)?,
            decay,
            warmup: t.ema_warmup,
        }),
    };
    std::fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, toml::to_string_pretty(&config)?)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let layer_decay = t.layer_decay.map(|d| optim::LayerDecay::new(&model, d));
    let mut state = state.unwrap_or(LoopState {
        version: checkpoint::CHECKPOINT_VERSION,
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        best_top1: 0.0,
        config: config.clone(),
    });
    // A resumed run moved by `--device` records its new device in its checkpoints.
    state.config.train.device = config.train.device.clone();

    let (total, per_epoch) = step_counts(&config, splits.train.len())?;
    let stop = options.stop_after.unwrap_or(total).min(total);
    let transform = Arc::new(Transform::training(&config.data));
    let splits_cache = splits.cache;
    let train_set = Arc::new(splits.train);
    let val_set = Arc::new(splits.val);
    // A run killed after its last checkpoint logged steps it will now run again: those lines go.
    let mut metrics = Metrics::open(&out, resume_dir.is_some().then_some(state.step))?;
    let started = Instant::now();
    let progress = Progress::new(stop, state.step);
    // On the CPU backend, which GEMM its kernels call (cpu_gemm.rs).
    let gemm = match parse_device_name(&t.device)?.backend {
        "flex" => format!(" (GEMM: {})", vit_model::cpu_gemm::cpu_gemm().short_name()),
        _ => String::new(),
    };
    progress.println(&format!(
        "training {} params on {} images ({} steps of {}, {} per epoch) on {}{gemm}",
        vit.num_params(),
        train_set.len(),
        total,
        t.batch_size,
        per_epoch,
        t.device
    ));
    let mut losses = Vec::new();
    let mut last_val = None;
    let mut window = (Instant::now(), 0usize);
    // Unreadable files (`on_bad_image = "skip"`), reported once each.
    let mut skipped = std::collections::BTreeSet::new();
    if let Some(c) = &splits_cache {
        for why in &c.skipped {
            progress.println(&format!("warning: skipped: {why}"));
            skipped.insert(why.clone());
        }
        progress.println(&if c.cached {
            format!(
                "training images held decoded in memory: {} MiB (data.cache; at most {} px a side)",
                c.bytes / (1024 * 1024),
                config.data.cache_max_side
            )
        } else {
            format!(
                "training images read and decoded as they are used (data.cache = {}; decoder {:?})",
                toml::Value::try_from(config.data.cache).map_or("?".into(), |v| v.to_string()),
                config.data.decoder.resolve()?
            )
        });
    }

    'epochs: while state.step < stop {
        let mode = Mode::Train {
            seed: t.seed,
            epoch: state.epoch,
            smoothing: t.label_smoothing,
        };
        let batches = plan(train_set.len(), t.batch_size, mode, true);
        let n_batches = batches.len();
        let loader = Loader::new(
            train_set.clone(),
            batches,
            state.batch_in_epoch,
            mode,
            transform.clone(),
            config.data.workers,
        );
        for batch in loader {
            // The last checkpoint stays as it is: the run can be resumed once the cause is fixed.
            let batch = batch.with_context(|| {
                format!(
                    "training stopped at step {} (epoch {}); the last checkpoint is in {}",
                    state.step,
                    state.epoch,
                    out.join("checkpoints/last").display()
                )
            })?;
            for why in &batch.skipped {
                if skipped.insert(why.clone()) {
                    progress.println(&format!("warning: skipped: {why}"));
                }
            }
            let lr = schedule::lr_at(state.step, total, &t);
            // Dropout / DropPath draw from the device RNG: seed it per step for exact resume.
            ad.seed(mix_seed(&[t.seed, state.step as u64, 3]));
            let (next, step) = match step::optimizer_step(
                model,
                &mut optim,
                &batch,
                train_set.shape,
                &t,
                lr,
                layer_decay.as_ref(),
                &ad,
            ) {
                Ok(done) => done,
                Err(step::StepError::NonFinite(value)) => {
                    progress.finish();
                    bail!(
                        "the loss became {value} at step {} (lr {lr:.3e}); stopping. The last good \
                         checkpoint is in {} — lower train.lr or raise train.warmup_steps",
                        state.step + 1,
                        out.join("checkpoints/last").display()
                    );
                }
                Err(e) => return Err(e.into()),
            };
            model = next;
            let (loss_sum, grad_norm) = (step.loss, step.grad_norm);
            state.step += 1;
            if let Some(average) = ema.as_mut() {
                average.update(&model, state.step);
            }
            state.batch_in_epoch += 1;
            losses.push(loss_sum);

            window.1 += batch.len();
            let secs = started.elapsed().as_secs_f64();
            let img_s = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            let done_here = (losses.len()).max(1) as f64;
            let eta = secs / done_here * (stop - state.step) as f64;
            progress.step(state.step, stop, loss_sum, lr, img_s, eta);
            metrics.write(&MetricLine {
                split: "train".into(),
                step: state.step,
                epoch: state.epoch,
                loss: loss_sum,
                top1: None,
                top5: None,
                lr: Some(lr),
                grad_norm: Some(grad_norm),
                img_per_s: Some(img_s),
                time_s: secs,
            })?;
            if window.0.elapsed().as_secs_f64() > 20.0 {
                window = (Instant::now(), 0);
            }

            let epoch_end = state.batch_in_epoch == n_batches;
            let periodic = t.eval_every > 0 && state.step % t.eval_every == 0;
            if epoch_end {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            // With an average of the weights, the average is what is validated and delivered.
            let averaged = ema.as_ref().map(|e| &e.model);
            if epoch_end || periodic || state.step == stop {
                let delivered = averaged.unwrap_or(&model);
                let report = validate(delivered, &val_set, &transform, &config, &device)?;
                let improved = report.top1 >= state.best_top1;
                if improved {
                    state.best_top1 = report.top1;
                }
                progress.println(&format!(
                    "step {} epoch {}: val{} loss {:.4} top-1 {:.2}% top-5 {:.2}% ({:.0}s)",
                    state.step,
                    state.epoch,
                    if ema.is_some() { " (EMA)" } else { "" },
                    report.loss,
                    100.0 * report.top1,
                    100.0 * report.top5,
                    started.elapsed().as_secs_f64()
                ));
                metrics.write(&MetricLine::eval(
                    "val",
                    &state,
                    &report,
                    started.elapsed().as_secs_f64(),
                ))?;
                let ckpt = out.join("checkpoints");
                checkpoint::save(&ckpt.join("last"), &model, averaged, &optim, &state)?;
                if improved {
                    checkpoint::save(&ckpt.join("best"), &model, averaged, &optim, &state)?;
                }
                last_val = Some(report);
            } else if t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0 {
                let ckpt = out.join("checkpoints");
                checkpoint::save(&ckpt.join("last"), &model, averaged, &optim, &state)?;
            }
            if state.step >= stop {
                break 'epochs;
            }
        }
    }
    progress.finish();

    let test = if options.skip_test || state.step < total {
        None
    } else {
        let test_set = Arc::new(splits.test);
        let report = evaluate(
            ema.as_ref().map_or(&model, |e| &e.model),
            test_set.clone(),
            transform,
            eval_batch(&config),
            config.data.workers,
            &device,
        )?;
        metrics.write(&MetricLine::eval(
            "test",
            &state,
            &report,
            started.elapsed().as_secs_f64(),
        ))?;
        Some(report)
    };
    let summary = Summary {
        steps: state.step,
        val: last_val,
        test,
        seconds: started.elapsed().as_secs_f64(),
        dir: out.clone(),
        losses,
        skipped: skipped.into_iter().collect(),
    };
    if let Err(e) = crate::plot::plot_run(&out, t.ema_decay.is_some()) {
        eprintln!("warning: could not draw the curves: {e:#}");
    }
    Ok(summary)
}

fn eval_batch(config: &Config) -> usize {
    (config.train.batch_size / config.train.accum_steps).max(1) * 2
}

fn validate(
    model: &vit_model::VisionTransformer,
    set: &Arc<ImageSet>,
    transform: &Arc<Transform>,
    config: &Config,
    device: &Device,
) -> Result<EvalReport> {
    evaluate(
        model,
        set.clone(),
        transform.clone(),
        eval_batch(config),
        config.data.workers,
        device,
    )
}
