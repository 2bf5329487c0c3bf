use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use vit_model::device_from_name;
use vit_model::weights::save_safetensors;
use vit_train::cli::{Cli, Command, EvalArgs, ExportArgs, FinetuneArgs, RecipeArgs, TrainArgs};
use vit_train::config::Config;
use vit_train::data::transforms::Transform;
use vit_train::data::{image_folder, load_split, webdataset};
use vit_train::eval::evaluate;
use vit_train::train::{Ending, Interrupt, RunOptions, Start, Trainer, checkpoint};

fn recipe(args: &RecipeArgs) -> Result<Config> {
    let Some(path) = &args.config else {
        bail!("--config FILE is required (see configs/)");
    };
    Config::load(path, &args.sets)
}

fn run_finetune(args: FinetuneArgs) -> Result<ExitCode> {
    let mut train = args.train.clone();
    let sets = args.overrides().map_err(anyhow::Error::msg)?;
    if train.resume.is_none() {
        train.recipe.sets = sets;
    } else if sets.len() > train.recipe.sets.len() {
        // The run's saved recipe already holds its weights, classes and schedule.
        bail!(
            "--resume continues a run with the recipe saved in its checkpoint; leave out the \
             fine-tuning flags (--weights, --lr, --epochs, ...)"
        );
    }
    run_train(train, true)
}

fn run_export(args: ExportArgs) -> Result<()> {
    let dir = checkpoint::resolve(&args.checkpoint)?;
    let state = checkpoint::read_state(&dir)?;
    let model = checkpoint::load_for_inference(&dir, &state, &device_from_name("cpu")?)?;
    save_safetensors(&model, &args.out)?;
    println!(
        "{} -> {} (timm names and layouts, {} tensors)",
        dir.display(),
        args.out.display(),
        vit_model::weights::state_dict(&model).len()
    );
    Ok(())
}

fn run_train(args: TrainArgs, finetune: bool) -> Result<ExitCode> {
    if args.stop_after == Some(0) {
        bail!("--stop-after 0: expected a number of steps of at least 1");
    }
    let start = match &args.resume {
        Some(run) => {
            if args.recipe.config.is_some() || !args.recipe.sets.is_empty() {
                bail!(
                    "--resume continues a run with the recipe saved in its checkpoint; leave out \
                     --config and --set (--device moves the run to another device)"
                );
            }
            Start::Resume(run.clone())
        }
        None => {
            let config = recipe(&args.recipe)?;
            if finetune && config.finetune.is_none() {
                bail!(
                    "finetune needs pretrained weights: pass --weights FILE or add a [finetune] \
                     section with `weights = \"...\"` to the recipe"
                );
            }
            Start::New(config)
        }
    };
    let options = RunOptions {
        device: args.device.clone(),
        stop_after: args.stop_after,
        interrupt: Some(Interrupt::install()?),
        ..Default::default()
    };
    let summary = Trainer::start(start, options)?.run()?;
    let run = summary.dir.display();
    if let Ending::Interrupted(signal) = summary.ending {
        println!(
            "interrupted by {} at step {} (epoch {}): checkpoint in {}; continue with \
                 `vit-train --resume {run}`",
            signal.name(),
            summary.steps,
            summary.epoch,
            summary.dir.join("checkpoints/last").display()
        );
        return Ok(ExitCode::from(signal.exit_code()));
    }
    println!(
        "done: {} steps in {:.1} min ({}); run in {run}",
        summary.steps,
        summary.seconds / 60.0,
        summary.ending.describe(),
    );
    if !summary.skipped.is_empty() {
        println!(
            "{} unreadable image files skipped (data.on_bad_image = \"skip\"; named above)",
            summary.skipped.len()
        );
    }
    if let Some(test) = summary.test {
        println!(
            "test accuracy: top-1 {:.2}%  top-5 {:.2}%  ({} images, loss {:.4})",
            100.0 * test.top1,
            100.0 * test.top5,
            test.images,
            test.loss
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_eval(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size 0: expected at least 1");
    }
    let (report, classes, what) = match &args.source.checkpoint {
        Some(ckpt) => eval_checkpoint(ckpt, &args)?,
        None => eval_weights(&args)?,
    };
    let classes = match &args.labels {
        Some(path) => vit_train::predict::read_labels(path)?,
        None => classes,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{what}");
        print!("{}", report.render(&classes));
    }
    Ok(())
}

/// A run's checkpoint on a split of its recipe's data.
fn eval_checkpoint(
    ckpt: &std::path::Path,
    args: &EvalArgs,
) -> Result<(vit_train::eval::EvalReport, Vec<String>, String)> {
    let dir = checkpoint::resolve(ckpt)?;
    let state = checkpoint::read_state(&dir)?;
    let mut config = state.config.clone();
    if let Some(root) = &args.data {
        config.data.root = root.clone();
    }
    if args.skip_bad_images {
        config.data.on_bad_image = vit_train::config::OnBadImage::Skip;
    }
    let device = device_from_name(
        args.source
            .device
            .as_deref()
            .unwrap_or(&config.train.device),
    )?;
    let model = checkpoint::load_for_inference(&dir, &state, &device)?;
    let split_arg = args.split.as_deref().unwrap_or("test");
    let split = match split_arg {
        "test" => config.data.test.clone(),
        "train" => config.data.train.clone(),
        "val" => config
            .data
            .val
            .clone()
            .context("the recipe has no separate data.val split")?,
        other => bail!("--split {other}: expected test, val or train"),
    };
    let set = Arc::new(load_split(&config.data, &model.config(), &split)?);
    let mut transform = Transform::evaluation(&config.data);
    vit_train::predict::override_preprocessing(&mut transform, &args.source)?;
    let report = evaluate(
        &model,
        set.clone(),
        Arc::new(transform),
        args.batch_size,
        args.workers.unwrap_or(config.data.workers),
        &device,
    )?;
    let what = format!(
        "{} split `{split}` of {}",
        dir.display(),
        config.data.root.display()
    );
    Ok((report, set.classes.clone(), what))
}

/// Pretrained weights on `DIR/<split>/<class>/<image>` with timm's evaluation transform.
fn eval_weights(args: &EvalArgs) -> Result<(vit_train::eval::EvalReport, Vec<String>, String)> {
    let Some(root) = &args.data else {
        bail!("eval --weights needs --data DIR (holding <split>/<class>/<image>)");
    };
    let mut loaded = vit_train::predict::load(&args.source)?;
    if args.skip_bad_images {
        loaded.transform.on_bad_image = vit_train::config::OnBadImage::Skip;
    }
    let split = args.split.as_deref().unwrap_or("val");
    let k = loaded.model.config().num_classes();
    let pattern = root.to_string_lossy();
    let (dir, mut set) = if webdataset::is_shard_pattern(&pattern) {
        // Shards: their folder's classes.txt names the classes, else they are numbered.
        let first = webdataset::pattern::expand(&pattern)?.remove(0);
        let folder = std::path::Path::new(&first)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let classes = webdataset::read_classes(folder)?
            .unwrap_or_else(|| (0..k).map(|i| i.to_string()).collect());
        let set = webdataset::load(
            std::path::Path::new(""),
            &pattern,
            loaded.shape,
            Some(classes),
        )?;
        (root.clone(), set)
    } else {
        let dir = root.join(split);
        let set = image_folder::load(&dir, loaded.shape)?;
        (dir, set)
    };
    // A model id's label names are its classes' names (the folders only order them).
    if loaded.classes.len() == set.classes.len()
        && loaded.classes.iter().any(|c| c.parse::<usize>().is_err())
    {
        set.classes = loaded.classes.clone();
    }
    if set.classes.len() != k {
        bail!(
            "{} has {} class folders but the weights' head has {k} classes",
            dir.display(),
            set.classes.len()
        );
    }
    let set = Arc::new(set);
    let p = &loaded.transform.eval;
    let what = format!(
        "{} on {} ({} images; crop_pct {}, crop_mode {:?}, interpolation {:?}, mean {:?}, std {:?})",
        args.source
            .weights
            .as_ref()
            .map_or(String::new(), |w| w.display().to_string()),
        dir.display(),
        set.len(),
        p.crop_pct,
        p.crop_mode,
        p.interpolation,
        loaded.transform.mean,
        loaded.transform.std
    );
    let report = evaluate(
        &loaded.model,
        set.clone(),
        Arc::new(loaded.transform.clone()),
        args.batch_size,
        args.workers.unwrap_or(2),
        &loaded.device,
    )?;
    Ok((report, set.classes.clone(), what))
}

fn run_shards(args: vit_train::cli::ShardsArgs) -> Result<()> {
    use vit_train::data::webdataset::write::{WriteOptions, parse_size, write_shards};
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => args
            .from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--from has no folder name; pass --prefix")?,
    };
    let options = WriteOptions {
        shard_bytes: parse_size(&args.shard_size).context("--shard-size")?,
        max_side: args.max_side,
        prefix: prefix.clone(),
        seed: args.seed,
    };
    let w = write_shards(&args.from, &args.out, &options)?;
    println!(
        "{} samples ({} re-encoded) in {} shards, {:.1} MB: {}/{prefix}-{{{:06}..{:06}}}.tar \
         (index {prefix}.index.json, classes.txt)",
        w.samples,
        w.reencoded,
        w.shards.len(),
        w.bytes as f64 / 1e6,
        args.out.display(),
        0,
        w.shards.len().saturating_sub(1)
    );
    Ok(())
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    // The CPU kernels' GEMM (VIT_CPU_GEMM, vit-model's cpu_gemm.rs): a value that cannot be
    // used is an error here rather than a silent fallback inside the kernels.
    vit_kernels::cpu_gemm::select_cpu_gemm()?;
    let done = match cli.command {
        None => return run_train(cli.train, false),
        Some(Command::Train(args)) => return run_train(args, false),
        Some(Command::Finetune(args)) => return run_finetune(args),
        Some(Command::Export(args)) => run_export(args),
        Some(Command::Eval(args)) => run_eval(args),
        Some(Command::Predict(args)) => {
            for p in vit_train::predict::predict(&args)? {
                if args.json {
                    println!("{}", serde_json::to_string(&p)?);
                    continue;
                }
                println!("{}", p.path.display());
                for s in &p.top_k {
                    println!("  {:>6.2}%  {} ({})", 100.0 * s.prob, s.label, s.index);
                }
                if let Some(logits) = &p.logits {
                    println!("  logits: {logits:?}");
                }
            }
            Ok(())
        }
        Some(Command::Inspect(args)) => {
            let (images, model) = vit_train::inspect::inspect(&args)?;
            if args.json {
                for r in &images {
                    println!("{}", serde_json::to_string(r)?);
                }
                println!("{}", serde_json::to_string(&model)?);
            } else {
                for r in &images {
                    let last = r
                        .attention_distance
                        .last()
                        .map_or(0.0, |d| d.iter().sum::<f64>() / d.len().max(1) as f64);
                    println!(
                        "{}: rollout over {}x{} patches; last layer's mean attention distance {last:.1} px",
                        r.path.display(),
                        r.rollout.len(),
                        r.rollout.first().map_or(0, Vec::len)
                    );
                }
                println!("figures in {}", args.out.display());
            }
            Ok(())
        }
        Some(Command::Shards(args)) => run_shards(args),
        Some(Command::Devices(args)) => {
            print!("{}", vit_train::devices::describe(args.json));
            Ok(())
        }
        Some(Command::Models(args)) => {
            print!("{}", vit_train::models::list(args.pattern.as_deref()));
            Ok(())
        }
        Some(Command::Info(args)) => {
            let config = recipe(&args.recipe)?;
            if args.json {
                println!("{}", vit_train::info::summary(&config));
            } else {
                print!("{}", vit_train::info::describe(&config)?);
            }
            Ok(())
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // mimalloc (the global allocator, from the library) keeps freed memory: see alloc.rs.
    vit_train::alloc::configure();
    if cfg!(feature = "flex") && std::env::var_os("BURN_DEVICE").is_none() {
        // Burn loads optimizer state onto Device::default(), which prefers a GPU backend when
        // one is compiled in (and panics when it has no adapter); the state moves to the
        // training device on the next step, so the CPU is the safe place for it.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
