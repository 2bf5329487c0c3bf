//! The trainer: a run's state (model, optimiser, moving average, loop position, data, run
//! folder, records) and the four things done with it: [`Trainer::start`] (a new run or a
//! resumed one; the only place a checkpoint is read), [`Trainer::step`],
//! [`Trainer::validate_and_checkpoint`] and [`Trainer::finish`]. [`Trainer::run`] is the loop
//! over them, stopping at the end of the schedule, at `--stop-after`, or on a signal.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use vit_model::{
    Model, PretrainedOptions, device_from_name, load_pretrained_model, parse_device_name,
};

use super::cadence::{Due, due};
use super::checkpoint::{self, LoopState};
use super::ema::ModelEma;
use super::interrupt::Signal;
use super::lock::RunLock;
use super::log::RunLog;
use super::optim::{self, LayerDecay};
use super::{RunOptions, Summary, schedule, step, step_counts};
use crate::config::Config;
use crate::data::image_folder::CacheReport;
use crate::data::loader::{Batch, Loader, Mode, mix_seed, train_plan};
use crate::data::transforms::Transform;
use crate::data::{ImageSet, load_splits};
use crate::eval::{EvalReport, evaluate};

/// What a run starts from.
#[allow(clippy::large_enum_variant)] // made once per run
pub enum Start {
    /// A new run of this recipe.
    New(Config),
    /// A run continued exactly where its checkpoint (or run folder's `last`) left it, with the
    /// recipe saved there.
    Resume(PathBuf),
}

/// How a run (this process's part of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The schedule's last step is done.
    Finished,
    /// `--stop-after` steps are done; the run can be resumed.
    StoppedAfter,
    /// A signal stopped it after a step, with `last` written.
    Interrupted(Signal),
}

impl Ending {
    pub fn describe(self) -> String {
        match self {
            Ending::Finished => "finished".into(),
            Ending::StoppedAfter => "stopped (--stop-after)".into(),
            Ending::Interrupted(s) => format!("interrupted ({})", s.name()),
        }
    }
}

/// The loss of a step was NaN or infinite: the run stops, its last checkpoint good.
#[derive(Debug, thiserror::Error)]
#[error(
    "the loss became {value} at step {step} (lr {lr:.3e}); stopping. The last good checkpoint \
     is in {last} — lower train.lr or raise train.warmup_steps"
)]
pub struct NonFiniteLoss {
    pub value: f64,
    pub step: usize,
    pub lr: f64,
    pub last: String,
}

/// The steps of the run: in all, per epoch, and where this process stops.
struct Plan {
    total: usize,
    per_epoch: usize,
    stop: usize,
}

/// The data of the run.
struct RunData {
    train: Arc<ImageSet>,
    val: Arc<ImageSet>,
    test: Arc<ImageSet>,
    transform: Arc<Transform>,
}

/// A run in progress.
pub struct Trainer {
    config: Config,
    options: RunOptions,
    /// Where evaluation runs; `ad` is the same device with autodiff, for training.
    device: Device,
    ad: Device,
    /// Always present between steps (a step moves it through the optimiser).
    model: Option<Model>,
    optim: ModuleOptimizer,
    ema: Option<ModelEma>,
    layer_decay: Option<LayerDecay>,
    state: LoopState,
    plan: Plan,
    data: RunData,
    dir: PathBuf,
    log: RunLog,
    last_val: Option<EvalReport>,
    /// The step `last` was last written at.
    saved_at: Option<usize>,
    /// Held for the life of the run: one process per run folder.
    _lock: RunLock,
}

impl Trainer {
    /// Sets a run up: the recipe (a resumed run's from its checkpoint), the device, the data,
    /// the run folder's lock, the model (new, pretrained or the checkpoint's), the optimiser
    /// and the moving average. Everything a resume reads is read before anything in the run
    /// folder is written, so a checkpoint that cannot be read leaves the run as it was.
    pub fn start(start: Start, options: RunOptions) -> Result<Self> {
        let (mut config, resumed) = recipe(start)?;
        if let Some(name) = &options.device {
            parse_device_name(name).context("--device")?;
            config.train.device = name.clone();
        }
        let device = device_from_name(&config.train.device)?;
        let splits = load_splits(&config.data, &config.model.config, config.train.seed)?;
        let dir = config.output.dir.clone();
        let lock = RunLock::acquire(&dir)?;
        if resumed.is_none() && dir.join("metrics.jsonl").exists() {
            bail!(
                "{} already holds a run (metrics.jsonl); choose another output.dir or --resume it",
                dir.display()
            );
        }
        let ad = device.clone().autodiff();
        ad.seed(config.train.seed);
        let resume_dir = resumed.as_ref().map(|(d, _)| d.clone());
        let model = build_model(&mut config, resume_dir.as_deref(), &ad)?;
        let mut optim = optim::build(&config.train, &model);
        if let Some(d) = &resume_dir {
            optim = checkpoint::load_optimizer(d, optim)?;
        }
        let ema = build_ema(&config, &model, resume_dir.as_deref(), &device)?;
        write_run_folder(&config)?;
        let state = loop_state(resumed.map(|(_, state)| state), &config);
        let (total, per_epoch) = step_counts(&config, splits.train.len())?;
        let stop = options.stop_after.unwrap_or(total).min(total);
        // A run killed after its last checkpoint logged steps it will now run again: those
        // lines go (RunLog::open).
        let resumed_at = resume_dir.is_some().then_some(state.step);
        let log = RunLog::open(&dir, resumed_at, config.output.tensorboard, stop)?;
        let mut trainer = Self {
            layer_decay: match (config.train.layer_decay, model.as_vit()) {
                (Some(d), Some(vit)) => Some(LayerDecay::new(vit, d)),
                _ => None,
            },
            data: RunData {
                train: Arc::new(splits.train),
                val: Arc::new(splits.val),
                test: Arc::new(splits.test),
                transform: Arc::new(Transform::training(&config.data)),
            },
            config,
            options,
            device,
            ad,
            model: Some(model),
            optim,
            ema,
            state,
            plan: Plan {
                total,
                per_epoch,
                stop,
            },
            dir,
            log,
            last_val: None,
            saved_at: resumed_at,
            _lock: lock,
        };
        trainer.announce(splits.cache.as_ref())?;
        Ok(trainer)
    }

    /// The run's first lines: the model, data, schedule and device; how images are held.
    fn announce(&mut self, cache: Option<&CacheReport>) -> Result<()> {
        let t = &self.config.train;
        // On the CPU backend, which GEMM its kernels call (cpu_gemm.rs).
        let gemm = match parse_device_name(&t.device)?.backend {
            "flex" => format!(
                " (GEMM: {})",
                vit_kernels::cpu_gemm::cpu_gemm().short_name()
            ),
            _ => String::new(),
        };
        self.log.println(&format!(
            "training {} params on {} images ({} steps of {}, {} per epoch) on {}{gemm}",
            self.model().config().num_params(),
            self.data.train.len(),
            self.plan.total,
            t.batch_size,
            self.plan.per_epoch,
            t.device
        ));
        let Some(c) = cache else { return Ok(()) };
        for why in &c.skipped {
            self.log.skipped(why);
        }
        let data = &self.config.data;
        self.log.println(&if c.cached {
            format!(
                "training images held decoded in memory: {} MiB (data.cache; at most {} px a side)",
                c.bytes / (1024 * 1024),
                data.cache_max_side
            )
        } else {
            format!(
                "training images read and decoded as they are used (data.cache = {}; decoder {:?})",
                toml::Value::try_from(data.cache).map_or("?".into(), |v| v.to_string()),
                data.decoder.resolve()?
            )
        });
        Ok(())
    }

    fn model(&self) -> &Model {
        self.model
            .as_ref()
            .expect("the model is in place between steps")
    }

    /// The model that is validated, checkpointed as the run's result and tested: the moving
    /// average of the weights where the run keeps one, else the trained weights.
    fn delivered(&self) -> &Model {
        self.ema.as_ref().map_or(self.model(), |e| &e.model)
    }

    fn at(&self) -> (usize, usize) {
        (self.state.step, self.state.epoch)
    }

    /// The batches of the current epoch from where the run stands.
    fn epoch_loader(&self) -> (Loader, usize) {
        let t = &self.config.train;
        let mode = Mode::Train {
            seed: t.seed,
            epoch: self.state.epoch,
            smoothing: t.label_smoothing,
        };
        let d = &self.config.data;
        let streams = (d.workers, d.shuffle_buffer, d.shuffle_initial);
        let batches = train_plan(&self.data.train, t.batch_size, mode, streams);
        let n = batches.len();
        let loader = Loader::new(
            self.data.train.clone(),
            batches,
            self.state.batch_in_epoch,
            mode,
            self.data.transform.clone(),
            self.config.data.workers,
        );
        (loader, n)
    }

    /// Runs the loop: steps, each followed by what the cadence makes due, until the schedule
    /// ends, `--stop-after`, or a signal (then `last` is written); then [`Self::finish`].
    pub fn run(mut self) -> Result<Summary> {
        match self.train_loop() {
            Ok(ending) => self.finish(ending),
            Err(e) => {
                let how = match e.downcast_ref::<NonFiniteLoss>() {
                    Some(_) => "non-finite loss".to_string(),
                    None => format!("failed: {e:#}"),
                };
                // Best effort: the failure may be the disk's.
                let _ = self.log.end(self.at(), &how);
                Err(e)
            }
        }
    }

    fn train_loop(&mut self) -> Result<Ending> {
        while self.state.step < self.plan.stop {
            if let Some(signal) = self.interrupted()? {
                return Ok(Ending::Interrupted(signal));
            }
            let (loader, n_batches) = self.epoch_loader();
            for batch in loader {
                // The last checkpoint stays as it is: the run can be resumed once the cause
                // is fixed.
                let batch = batch.with_context(|| {
                    format!(
                        "training stopped at step {} (epoch {}); the last checkpoint is in {}",
                        self.state.step,
                        self.state.epoch,
                        self.dir.join("checkpoints/last").display()
                    )
                })?;
                self.step(&batch)?;
                let epoch_end = self.state.batch_in_epoch == n_batches;
                if epoch_end {
                    self.state.epoch += 1;
                    self.state.batch_in_epoch = 0;
                }
                self.validate_and_checkpoint(epoch_end)?;
                if let Some(signal) = self.interrupted()? {
                    return Ok(Ending::Interrupted(signal));
                }
                if self.state.step >= self.plan.stop {
                    break;
                }
            }
        }
        Ok(match self.state.step == self.plan.total {
            true => Ending::Finished,
            false => Ending::StoppedAfter,
        })
    }

    /// A pending signal: `last` written (unless it holds this step already).
    fn interrupted(&mut self) -> Result<Option<Signal>> {
        let Some(signal) = self.options.interrupt.as_ref().and_then(|i| i.requested()) else {
            return Ok(None);
        };
        if self.saved_at != Some(self.state.step) && self.state.step > 0 {
            self.save("last")?;
        }
        Ok(Some(signal))
    }

    /// One optimiser step on `batch`: the learning rate of the schedule, the step's seed,
    /// forward, backward, update, the moving average, the records.
    pub fn step(&mut self, batch: &Batch) -> Result<()> {
        for why in &batch.skipped {
            self.log.skipped(why);
        }
        let t = &self.config.train;
        let lr = schedule::lr_at(self.state.step, self.plan.total, t);
        // Dropout / DropPath draw from the device RNG: seeded per step for exact resume.
        self.ad.seed(mix_seed(&[t.seed, self.state.step as u64, 3]));
        let model = self
            .model
            .take()
            .expect("the model is in place between steps");
        let shape = self.data.train.shape;
        let ld = self.layer_decay.as_ref();
        let (model, out) =
            match step::optimizer_step(model, &mut self.optim, batch, shape, t, lr, ld, &self.ad) {
                Ok(done) => done,
                Err(step::StepError::NonFinite(value)) => {
                    return Err(NonFiniteLoss {
                        value,
                        step: self.state.step + 1,
                        lr,
                        last: self.dir.join("checkpoints/last").display().to_string(),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
        self.state.step += 1;
        self.state.batch_in_epoch += 1;
        if let Some(average) = self.ema.as_mut() {
            average.update(&model, self.state.step);
        }
        self.model = Some(model);
        self.log
            .step(self.at(), batch.len(), out.loss, lr, out.grad_norm)
    }

    /// What the cadence makes due after a step: validation of the delivered model, then `last`
    /// (and `best` when validation improved), or `last` alone.
    pub fn validate_and_checkpoint(&mut self, epoch_end: bool) -> Result<()> {
        match due(
            &self.config.train,
            self.state.step,
            epoch_end,
            self.plan.stop,
        ) {
            Due::Nothing => Ok(()),
            Due::Checkpoint => self.save("last"),
            Due::ValidateAndCheckpoint => {
                let report = self.evaluate(&self.data.val)?;
                let improved = report.top1 >= self.state.best_top1;
                if improved {
                    self.state.best_top1 = report.top1;
                }
                self.log
                    .eval("val", self.at(), &report, self.ema.is_some())?;
                self.save("last")?;
                if improved {
                    self.save("best")?;
                }
                self.last_val = Some(report);
                Ok(())
            }
        }
    }

    fn evaluate(&self, set: &Arc<ImageSet>) -> Result<EvalReport> {
        evaluate(
            self.delivered(),
            set.clone(),
            self.data.transform.clone(),
            eval_batch(&self.config),
            self.config.data.workers,
            &self.device,
        )
    }

    /// Writes checkpoint `name` (`last`, `best`) of the run's current state.
    fn save(&mut self, name: &str) -> Result<()> {
        let dir = self.dir.join("checkpoints").join(name);
        let averaged = self.ema.as_ref().map(|e| &e.model);
        checkpoint::save(&dir, self.model(), averaged, &self.optim, &self.state)?;
        if name == "last" {
            self.saved_at = Some(self.state.step);
        }
        Ok(())
    }

    /// Ends the run: the test-set evaluation (a finished run, unless skipped), the end line,
    /// the curves, the summary.
    pub fn finish(mut self, ending: Ending) -> Result<Summary> {
        let test = match ending == Ending::Finished && !self.options.skip_test {
            true => {
                let report = self.evaluate(&self.data.test)?;
                self.log.eval("test", self.at(), &report, false)?;
                Some(report)
            }
            false => None,
        };
        self.log.end(self.at(), &ending.describe())?;
        if let Err(e) = crate::plot::plot_run(&self.dir, self.config.train.ema_decay.is_some()) {
            eprintln!("warning: could not draw the curves: {e:#}");
        }
        Ok(Summary {
            steps: self.state.step,
            epoch: self.state.epoch,
            ending,
            val: self.last_val,
            test,
            seconds: self.log.seconds(),
            dir: self.dir,
            losses: std::mem::take(&mut self.log.losses),
            skipped: std::mem::take(&mut self.log.skipped).into_iter().collect(),
        })
    }
}

/// The recipe of a run and, resuming, its checkpoint folder and loop state (read once).
fn recipe(start: Start) -> Result<(Config, Option<(PathBuf, LoopState)>)> {
    Ok(match start {
        Start::Resume(path) => {
            let dir = checkpoint::resolve(&path)?;
            let state = checkpoint::read_state(&dir)?;
            let mut config = state.config.clone();
            // A run folder that was moved or renamed continues where it is now.
            if let Some(run) = checkpoint::run_folder(&dir) {
                config.output.dir = run;
            }
            (config, Some((dir, state)))
        }
        Start::New(config) => {
            // A recipe built in code has not been through `Config::load`'s checks.
            config.check()?;
            (config, None)
        }
    })
}

/// Where the loop starts: the checkpoint's position, or step 0 of a new run.
fn loop_state(resumed: Option<LoopState>, config: &Config) -> LoopState {
    match resumed {
        // A resumed run moved by `--device` records its new device in its checkpoints.
        Some(mut state) => {
            state.config.train.device = config.train.device.clone();
            state
        }
        None => LoopState {
            version: checkpoint::CHECKPOINT_VERSION,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            best_top1: 0.0,
            config: config.clone(),
        },
    }
}

/// The model a run starts from: the checkpoint's (resume), the pretrained weights with a new
/// head (`[finetune]`), or a new one drawn on the host from the seed (the same on every
/// device). A fine-tuned model's architecture as loaded is recorded in `config`.
fn build_model(
    config: &mut Config,
    resume: Option<&std::path::Path>,
    ad: &Device,
) -> Result<Model> {
    let arch = config.model.config.clone();
    let mut model = match (resume, &config.finetune) {
        (Some(dir), _) => checkpoint::load_model(dir, arch.try_init(ad)?)?,
        (None, Some(ft)) => {
            let options = PretrainedOptions {
                format: ft.weights_format,
                resample: ft.posemb_resample,
                new_head: Some(arch.num_classes()),
            };
            let model = load_pretrained_model(&arch, &ft.weights, &options, ad)
                .with_context(|| "finetune.weights".to_string())?;
            // LayerScale, qkv bias, epsilon come from the checkpoint: resume, eval and predict
            // rebuild exactly this model.
            config.model.config = model.config();
            model
        }
        (None, None) => arch.init_seeded(config.train.seed, ad)?,
    };
    if config.finetune.as_ref().is_some_and(|f| f.freeze_backbone) {
        model = optim::freeze_backbone(model);
    }
    Ok(model)
}

/// The moving average of the weights, where the recipe keeps one: a copy of the model, or the
/// checkpoint's average on resume.
fn build_ema(
    config: &Config,
    model: &Model,
    resume: Option<&std::path::Path>,
    device: &Device,
) -> Result<Option<ModelEma>> {
    let t = &config.train;
    Ok(match (t.ema_decay, resume) {
        (None, _) => None,
        (Some(decay), None) => Some(ModelEma::new(model, decay, t.ema_warmup)),
        (Some(decay), Some(dir)) => Some(ModelEma {
            model: checkpoint::load_ema(dir, model.config().try_init(device)?)?,
            decay,
            warmup: t.ema_warmup,
        }),
    })
}

/// The run folder's `checkpoints/` and the recipe as run (`config.toml`).
fn write_run_folder(config: &Config) -> Result<()> {
    let out = &config.output.dir;
    std::fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("config.toml");
    std::fs::write(&path, toml::to_string_pretty(config)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn eval_batch(config: &Config) -> usize {
    (config.train.batch_size / config.train.accum_steps).max(1) * 2
}
