//! Which GEMM the CPU kernels call: the pure-Rust `gemm` crate, or a BLAS library's
//! `cblas_sgemm` loaded at run time (Intel MKL from the PyPI `mkl` wheel, OpenBLAS, ...).
//!
//! The gemm crate is the default that always works. On Intel CPUs MKL's sgemm is faster than
//! it at the ViT's shapes (BENCHMARKS.md, "The CPU's GEMM"), and PyTorch links MKL, so where
//! MKL is installed `auto` takes it there. The choice is made once per process from
//! [`CPU_GEMM_ENV`]:
//!
//! | `VIT_CPU_GEMM` | GEMM |
//! |---|---|
//! | `auto` (or unset) | MKL on an Intel CPU where it is found, else the gemm crate |
//! | `gemm` | the gemm crate |
//! | `mkl` | MKL, or an error if it is not found |
//! | a path (contains `/`) | that library's `cblas_sgemm` (MKL's `libmkl_rt`, `libopenblas`, ...) |
//!
//! MKL is looked for as `libmkl_rt.so.3` / `.so.2` / `.so` in `$VIT_MKL_DIR`, on the loader's
//! path (`LD_LIBRARY_PATH`), then in the `lib` folder of `$VIRTUAL_ENV`, `$CONDA_PREFIX` and
//! `~/.local` (where `pip install mkl` puts it). In this repository `cargo xtask mkl` installs
//! the PyPI wheel into `xtask/.venv`, and `.cargo/config.toml` points `VIT_MKL_DIR` there for
//! `cargo run` and `cargo test`. A BLAS runs single-threaded (MKL's sequential
//! layer, `openblas_set_num_threads(1)`): the kernels split each product across rayon's threads
//! themselves, so that BLAS threads and rayon threads never compete for the cores.

use std::ffi::{CStr, c_char, c_int};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable that chooses the CPU's GEMM (see the module docs).
pub const CPU_GEMM_ENV: &str = "VIT_CPU_GEMM";

/// A folder holding MKL's `libmkl_rt`, searched first.
pub const MKL_DIR_ENV: &str = "VIT_MKL_DIR";

/// The file names MKL's single dynamic library goes by, newest first.
const MKL_NAMES: [&str; 3] = ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"];

/// The GEMM the CPU kernels use.
pub enum CpuGemm {
    /// The `gemm` crate (pure Rust, AVX-512 / AVX2 kernels chosen at run time).
    GemmCrate,
    /// A BLAS library's `cblas_sgemm`.
    Blas(Blas),
}

/// Why the GEMM named by [`CPU_GEMM_ENV`] cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CpuGemmError {
    /// The variable's value is none of the accepted ones.
    #[error(
        "{CPU_GEMM_ENV}={0:?} is not a CPU GEMM: expected `auto`, `gemm`, `mkl` or a path to a \
         BLAS library (a value with a `/`)"
    )]
    UnknownValue(String),
    /// MKL was asked for and is not installed where it is looked for.
    #[error(
        "{CPU_GEMM_ENV}=mkl, but MKL's libmkl_rt was not found (tried: {0}); install it with \
         `pip install mkl` (in a virtual environment, or `--user`), or set {CPU_GEMM_ENV} to \
         the library's path"
    )]
    MklNotFound(String),
    /// The library could not be loaded, or lacks `cblas_sgemm`.
    #[error("{CPU_GEMM_ENV}: cannot use {path} as the CPU's BLAS: {reason}")]
    Load {
        /// The library's path.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// `cblas_sgemm` of the LP64 interface (32-bit integers), as every BLAS exports it.
type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
/// `MKL_THREADING_SEQUENTIAL` of `MKL_Set_Threading_Layer`.
const MKL_THREADING_SEQUENTIAL: c_int = 1;

/// A BLAS library loaded at run time, its `cblas_sgemm` set to run on the calling thread.
pub struct Blas {
    sgemm: Sgemm,
    path: PathBuf,
    version: String,
    // Kept last: the library stays loaded while `sgemm` can be called.
    _lib: libloading::Library,
}

impl Blas {
    /// Loads the library at `path` (a bare file name goes through the loader's search path).
    pub fn load(path: &Path) -> Result<Self, CpuGemmError> {
        let error = |reason: String| CpuGemmError::Load {
            path: path.display().to_string(),
            reason,
        };
        // SAFETY: loading a BLAS runs its initialisers, which are plain C library set-up.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| error(e.to_string()))?;
        // SAFETY: `cblas_sgemm` has this C signature in every CBLAS (LP64 integers).
        let sgemm: Sgemm = *unsafe { lib.get::<Sgemm>(b"cblas_sgemm\0") }
            .map_err(|e| error(format!("no `cblas_sgemm` in it ({e})")))?;
        let mut version = String::from("BLAS");
        // MKL: the sequential layer, chosen before any other call into MKL.
        // SAFETY: MKL's `int MKL_Set_Threading_Layer(int)`.
        let set_layer = unsafe {
            lib.get::<unsafe extern "C" fn(c_int) -> c_int>(b"MKL_Set_Threading_Layer\0")
        };
        if let Ok(set_layer) = set_layer {
            // SAFETY: called with a valid layer constant, before the first GEMM.
            unsafe { set_layer(MKL_THREADING_SEQUENTIAL) };
            version = "MKL".into();
            // SAFETY: MKL's `void MKL_Get_Version_String(char *buf, int len)`.
            if let Ok(get) = unsafe {
                lib.get::<unsafe extern "C" fn(*mut c_char, c_int)>(b"MKL_Get_Version_String\0")
            } {
                let mut buf = [0 as c_char; 256];
                // SAFETY: MKL writes at most `len` bytes, NUL-terminated, into `buf`.
                unsafe { get(buf.as_mut_ptr(), buf.len() as c_int) };
                // SAFETY: the buffer was zeroed, so it is NUL-terminated whatever MKL wrote.
                let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
                version = s.to_string_lossy().trim().to_string();
            }
        }
        // OpenBLAS: one thread (its default is one per core).
        // SAFETY: OpenBLAS's `void openblas_set_num_threads(int)`.
        let set_threads =
            unsafe { lib.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0") };
        if let Ok(set_threads) = set_threads {
            // SAFETY: a positive thread count.
            unsafe { set_threads(1) };
            version = "OpenBLAS".into();
            // SAFETY: OpenBLAS's `char *openblas_get_config(void)`, a static string.
            if let Ok(config) = unsafe {
                lib.get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_config\0")
            } {
                // SAFETY: a NUL-terminated static string owned by the library.
                let s = unsafe { CStr::from_ptr(config()) };
                version = format!("OpenBLAS {}", s.to_string_lossy().trim());
            }
        }
        Ok(Self {
            sgemm,
            path: path.to_path_buf(),
            version,
            _lib: lib,
        })
    }

    /// The library's own version string (MKL's, OpenBLAS's configuration), or `BLAS`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `c = alpha * a b` for `a` `[m, k]`, `b` `[k, n]` given as (pointer, row stride, column
    /// stride), `c` `[m, n]` row-major with row stride `ldc`, on the calling thread. `None` when
    /// an operand's strides are not a BLAS layout (neither stride 1); the caller then uses the
    /// gemm crate.
    ///
    /// # Safety
    /// The operands span their shapes with their strides; `c` is writable for `[m, n]` with row
    /// stride `ldc` and is not read.
    pub(crate) unsafe fn sgemm(
        &self,
        mkn: [usize; 3],
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        c: (*mut f32, isize),
        alpha: f32,
    ) -> Option<()> {
        // SAFETY: the caller's guarantees are this function's; with beta 0 `c` is not read.
        unsafe { self.sgemm_beta(mkn, a, b, c, alpha, 0.0) }
    }

    /// [`Blas::sgemm`] with `c = alpha a b + beta c`: `beta` 1 adds the product onto `c` (the
    /// convolutions' weight gradient, summed over images).
    ///
    /// # Safety
    /// As [`Blas::sgemm`]; with `beta` non-zero `c` is also read, so it must be initialised.
    pub(crate) unsafe fn sgemm_beta(
        &self,
        [m, k, n]: [usize; 3],
        (a, a_rs, a_cs): (*const f32, isize, isize),
        (b, b_rs, b_cs): (*const f32, isize, isize),
        (c, ldc): (*mut f32, isize),
        alpha: f32,
        beta: f32,
    ) -> Option<()> {
        // (transpose flag, leading dimension) of a row-major [rows, cols] operand.
        let layout = |rs: isize, cs: isize, rows: usize, cols: usize| {
            if cs == 1 && rs >= cols.max(1) as isize {
                Some((NO_TRANS, rs))
            } else if rs == 1 && cs >= rows.max(1) as isize {
                Some((TRANS, cs))
            } else {
                None
            }
        };
        let small = |v: isize| c_int::try_from(v).ok();
        let (ta, lda) = layout(a_rs, a_cs, m, k)?;
        let (tb, ldb) = layout(b_rs, b_cs, k, n)?;
        let (mi, ni, ki) = (small(m as isize)?, small(n as isize)?, small(k as isize)?);
        let (lda, ldb, ldc) = (small(lda)?, small(ldb)?, small(ldc)?);
        if ldc < ni.max(1) {
            return None;
        }
        // SAFETY: the layouts above are what CBLAS reads for these flags and leading dimensions;
        // the caller guarantees the operands span them and that `c` is writable.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR, ta, tb, mi, ni, ki, alpha, a, lda, b, ldb, beta, c, ldc,
            )
        };
        Some(())
    }
}

impl CpuGemm {
    /// A short name for tables: `gemm crate`, `MKL 2026.2`, `OpenBLAS 0.3.21`, `BLAS`.
    pub fn short_name(&self) -> String {
        match self {
            CpuGemm::GemmCrate => "gemm crate".into(),
            CpuGemm::Blas(blas) => {
                let v = blas.version();
                // MKL's string reads "Intel(R) oneAPI Math Kernel Library Version 2026.2-Product ...".
                match v.split_once("Version ") {
                    Some((_, rest)) => {
                        let number = rest.split(['-', ' ']).next().unwrap_or(rest);
                        format!("MKL {number}")
                    }
                    None => v.split(' ').take(2).collect::<Vec<_>>().join(" "),
                }
            }
        }
    }
}

impl fmt::Display for CpuGemm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuGemm::GemmCrate => write!(f, "gemm crate (pure Rust)"),
            CpuGemm::Blas(blas) => write!(
                f,
                "{} ({}), one thread per call",
                blas.version(),
                blas.path().display()
            ),
        }
    }
}

/// Whether this is an Intel CPU (MKL's sgemm is taken by `auto` only there).
pub fn is_intel_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &vendor == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The places MKL is looked for, in order (see the module docs).
pub fn mkl_candidates() -> Vec<PathBuf> {
    let in_dir = |dir: PathBuf| MKL_NAMES.map(|n| dir.join(n));
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(MKL_DIR_ENV).filter(|v| !v.is_empty()) {
        out.extend(in_dir(PathBuf::from(dir)));
    }
    out.extend(MKL_NAMES.iter().map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(prefix).join("lib"));
        }
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(home).join(".local/lib"));
    }
    for dir in dirs {
        out.extend(in_dir(dir));
    }
    out
}

/// MKL from the first candidate that loads.
fn find_mkl() -> Result<Blas, CpuGemmError> {
    let candidates = mkl_candidates();
    for path in &candidates {
        if let Ok(blas) = Blas::load(path) {
            return Ok(blas);
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(CpuGemmError::MklNotFound(tried.join(", ")))
}

/// The GEMM a value of [`CPU_GEMM_ENV`] names (`None`: unset).
pub fn resolve(value: Option<&str>) -> Result<CpuGemm, CpuGemmError> {
    match value.map(str::trim) {
        None | Some("") | Some("auto") => Ok(if is_intel_cpu() {
            find_mkl().map_or(CpuGemm::GemmCrate, CpuGemm::Blas)
        } else {
            CpuGemm::GemmCrate
        }),
        Some("gemm") => Ok(CpuGemm::GemmCrate),
        Some("mkl") => find_mkl().map(CpuGemm::Blas),
        Some(path) if path.contains('/') => Blas::load(Path::new(path)).map(CpuGemm::Blas),
        Some(other) => Err(CpuGemmError::UnknownValue(other.to_string())),
    }
}

static CHOICE: OnceLock<Result<CpuGemm, CpuGemmError>> = OnceLock::new();

/// The process's GEMM, chosen from [`CPU_GEMM_ENV`] on the first call; an error names what is
/// wrong with the variable. Programs call this at start-up to report that error: the kernels
/// ([`cpu_gemm`]) use the gemm crate when the variable is unusable.
pub fn select_cpu_gemm() -> Result<&'static CpuGemm, CpuGemmError> {
    CHOICE
        .get_or_init(|| {
            let value = std::env::var(CPU_GEMM_ENV).ok();
            resolve(value.as_deref())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The GEMM the kernels call: [`select_cpu_gemm`]'s, or the gemm crate if that is an error.
pub fn cpu_gemm() -> &'static CpuGemm {
    static GEMM_CRATE: CpuGemm = CpuGemm::GemmCrate;
    select_cpu_gemm().unwrap_or(&GEMM_CRATE)
}

/// The BLAS the kernels call, if one was chosen.
pub(crate) fn blas() -> Option<&'static Blas> {
    match cpu_gemm() {
        CpuGemm::Blas(blas) => Some(blas),
        CpuGemm::GemmCrate => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_name_the_variable_and_the_choices() {
        let err = resolve(Some("openblas64")).err().unwrap().to_string();
        assert!(err.contains("VIT_CPU_GEMM=\"openblas64\""), "{err}");
        assert!(err.contains("`auto`, `gemm`, `mkl`"), "{err}");
    }

    #[test]
    fn gemm_is_always_available() {
        assert!(matches!(resolve(Some("gemm")), Ok(CpuGemm::GemmCrate)));
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let err = resolve(Some("/nonexistent/libblas.so"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/libblas.so"), "{err}");
    }

    #[test]
    fn a_library_without_cblas_sgemm_is_refused() {
        // libc is loaded in every process and has no `cblas_sgemm`.
        let err = Blas::load(Path::new("libc.so.6"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no `cblas_sgemm`"), "{err}");
    }
}
