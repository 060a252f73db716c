//! Building the corpus: flags per spec, a content-hash cache, and a two-thread job runner.
//!
//! Each artifact lives in `<target dir>/padtrim-corpus/<name>-<hash>/`, where the hash covers
//! the compiler and its version, every flag and every source byte. A directory is created
//! under a temporary name and renamed into place when complete, so a present directory is
//! always a finished build, and concurrent test processes cannot see half-written files.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::artifact::{Artifact, ArtifactKind, Compiler, Linkage};
use crate::generate::many_functions_source;
use crate::matrix::Spec;

/// Name of the corpus shared library (`-lpadtrimcorpus`).
const LIB_FILE: &str = "libpadtrimcorpus.so";
/// Bumped when the layout or naming of built artifacts changes, to invalidate the cache.
const CACHE_VERSION: &str = "padtrim-corpus-v1";
/// Compile jobs run at once (the machines this runs on have two cores).
const BUILD_THREADS: usize = 2;

/// The corpus sources directory (`testsuite/corpus`).
pub(crate) fn corpus_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// 64-bit FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(mut self, data: &[u8]) -> Self {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") hash differently.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        self
    }
}

/// One compiler invocation and the artifact it produces.
struct Job {
    artifact: Artifact,
    /// Final cache directory of the artifact.
    dir: PathBuf,
    /// Arguments after the driver's own argv prefix; `{OUT}` stands for the output file.
    args: Vec<String>,
}

/// The version banner of each compiler, fetched once; panics if the compiler is missing.
fn compiler_versions(compilers: &[Compiler]) -> HashMap<Compiler, String> {
    let mut versions = HashMap::new();
    for &c in compilers {
        if versions.contains_key(&c) {
            continue;
        }
        let out = c.command().arg("--version").output();
        match out {
            Ok(out) if out.status.success() => {
                versions.insert(
                    c,
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            _ => panic!(
                "padtrim-testsuite: cannot run `{}`: the RISC-V cross toolchain is missing; \
                 run scripts/setup first",
                c.argv().join(" ")
            ),
        }
    }
    versions
}

/// The source files of a program; `many` is generated into `generated_dir`.
fn sources_of(program: &str, compiler: Compiler, generated_dir: &Path) -> Vec<PathBuf> {
    let dir = corpus_source_dir();
    match program {
        "many" => vec![generated_dir.join("many.c")],
        "cxx" => vec![dir.join("cxx.cc")],
        _ => {
            debug_assert_eq!(compiler, Compiler::Gcc);
            vec![dir.join(format!("{program}.c"))]
        }
    }
}

/// Writes the generated sources (atomically, so parallel test processes do not collide).
fn write_generated_sources(generated_dir: &Path) {
    fs::create_dir_all(generated_dir).expect("create generated source dir");
    let path = generated_dir.join("many.c");
    let text = many_functions_source();
    if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return;
    }
    let tmp = generated_dir.join(format!("many.c.tmp-{}", std::process::id()));
    fs::write(&tmp, &text).expect("write generated many.c");
    fs::rename(&tmp, &path).expect("rename generated many.c");
}

/// The unique name of a spec's artifact.
fn artifact_name(spec: &Spec) -> String {
    let mut name = spec.program.to_string();
    match spec.compiler {
        Compiler::Clangxx => name.push_str("-clang"),
        Compiler::Gxx => name.push_str("-gxx"),
        Compiler::Gcc => {}
    }
    name.push('-');
    name.push_str(spec.march);
    match spec.pad {
        Some((n, 0)) => name.push_str(&format!("-p{n}")),
        Some((n, m)) => name.push_str(&format!("-p{n}_{m}")),
        None => name.push_str("-nopfe"),
    }
    name.push_str(spec.opt);
    name.push_str(match spec.linkage {
        Linkage::Pie => "-pie",
        Linkage::NoPie => "-nopie",
        Linkage::Static => "-static",
        Linkage::Shared => "-shared",
        Linkage::None => "",
    });
    if spec.function_sections {
        name.push_str("-ffs");
    }
    if spec.object {
        name.push_str("-obj");
    }
    name
}

/// Turns a spec into a job: flags, cache key, output path and the artifact description.
/// `libs` maps a variant key to the built shared library, for `use_shared`.
fn plan(
    spec: &Spec,
    generated_dir: &Path,
    cache_root: &Path,
    versions: &HashMap<Compiler, String>,
    libs: &HashMap<String, PathBuf>,
) -> Job {
    let rv32 = spec.march.starts_with("rv32");
    let rvc = spec.march.contains('c');
    let name = artifact_name(spec);

    let mut compile = vec![format!("-march={}", spec.march)];
    compile.push(if rv32 { "-mabi=ilp32" } else { "-mabi=lp64d" }.to_string());
    compile.push(spec.opt.to_string());
    if spec.opt == "-O0" {
        // Debug info brings its own relocations (.rela.debug_*), worth having in some files.
        compile.push("-g".to_string());
    }
    if let Some((n, m)) = spec.pad {
        compile.push(if m == 0 {
            format!("-fpatchable-function-entry={n}")
        } else {
            format!("-fpatchable-function-entry={n},{m}")
        });
    }
    if spec.function_sections {
        compile.push("-ffunction-sections".to_string());
    }
    match spec.linkage {
        Linkage::NoPie => compile.push("-fno-pie".to_string()),
        Linkage::Shared => compile.push("-fPIC".to_string()),
        _ => {}
    }
    if spec.program == "threads" {
        compile.push("-pthread".to_string());
    }

    let mut link = vec!["-Wl,-q".to_string()];
    match spec.linkage {
        Linkage::NoPie => link.push("-no-pie".to_string()),
        Linkage::Static => link.push("-static".to_string()),
        Linkage::Shared => {
            link.push("-shared".to_string());
            link.push(format!("-Wl,-soname,{LIB_FILE}"));
        }
        Linkage::Pie | Linkage::None => {}
    }
    if spec.program == "threads" {
        link.push("-pthread".to_string());
    }
    // Libraries go after the sources on the command line, or ld will not use them.
    let mut lib_args: Vec<String> = Vec::new();
    let mut lib_dir = None;
    if spec.program == "use_shared" {
        let lib = libs
            .get(&variant_key(spec))
            .unwrap_or_else(|| panic!("no corpus shared library built for {name}"));
        let dir = lib.parent().expect("library dir").to_path_buf();
        lib_args.push(format!("-L{}", dir.display()));
        lib_args.push("-lpadtrimcorpus".to_string());
        lib_dir = Some(dir);
    }

    let sources = sources_of(spec.program, spec.compiler, generated_dir);
    let (kind, flags, link_args) = if spec.object {
        let mut flags = compile.clone();
        flags.push("-c".to_string());
        let link_args = if spec.linkage == Linkage::None {
            Vec::new()
        } else {
            let mut args: Vec<String> = compile
                .iter()
                .filter(|f| f.starts_with("-march") || f.starts_with("-mabi"))
                .cloned()
                .collect();
            args.extend(link.iter().cloned());
            args.extend(lib_args.iter().cloned());
            args
        };
        (ArtifactKind::Object, flags, link_args)
    } else if spec.linkage == Linkage::Shared {
        (
            ArtifactKind::SharedLib,
            [compile.clone(), link.clone(), lib_args.clone()].concat(),
            Vec::new(),
        )
    } else {
        (
            ArtifactKind::Executable,
            [compile.clone(), link.clone(), lib_args.clone()].concat(),
            Vec::new(),
        )
    };

    let mut hash = Fnv::new().bytes(CACHE_VERSION.as_bytes());
    for a in spec.compiler.argv() {
        hash = hash.bytes(a.as_bytes());
    }
    hash = hash.bytes(versions[&spec.compiler].as_bytes());
    for f in &flags {
        hash = hash.bytes(f.as_bytes());
    }
    for s in &sources {
        let text =
            fs::read(s).unwrap_or_else(|e| panic!("read corpus source {}: {e}", s.display()));
        hash = hash.bytes(&text);
    }
    let dir = cache_root.join(format!("{name}-{:016x}", hash.0));
    let file = match kind {
        ArtifactKind::Object => format!("{name}.o"),
        ArtifactKind::SharedLib => LIB_FILE.to_string(),
        ArtifactKind::Executable => name.clone(),
    };

    let mut args: Vec<String> = flags
        .iter()
        .filter(|f| !lib_args.contains(f))
        .cloned()
        .collect();
    args.extend(sources.iter().map(|s| s.display().to_string()));
    args.extend(lib_args.iter().cloned());
    args.push("-o".to_string());
    args.push("{OUT}".to_string());

    let runnable = kind == ArtifactKind::Executable && !rv32;
    let (pad_nops, pre_nops) = spec.pad.unwrap_or((0, 0));
    let artifact = Artifact {
        name,
        program: spec.program.to_string(),
        path: dir.join(&file),
        kind,
        linkage: spec.linkage,
        compiler: spec.compiler,
        sources,
        flags,
        march: spec.march.to_string(),
        rvc,
        pad_nops,
        pre_nops,
        opt_level: spec.opt.to_string(),
        function_sections: spec.function_sections,
        pointer_size: if rv32 { 4 } else { 8 },
        runnable,
        expected_status: runnable.then_some(3),
        lib_dir,
        link_args,
    };
    Job {
        artifact,
        dir,
        args,
    }
}

/// Key matching a program variant to the shared library built with the same options.
fn variant_key(spec: &Spec) -> String {
    format!(
        "{}|{:?}|{}|{}",
        spec.march, spec.pad, spec.opt, spec.function_sections
    )
}

/// Runs one job unless its cache directory already exists.
fn run_job(job: &Job) -> Result<(), String> {
    if job.dir.is_dir() {
        return Ok(());
    }
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let tmp = job.dir.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let out = tmp.join(job.artifact.path.file_name().expect("artifact file name"));
    let args: Vec<String> = job
        .args
        .iter()
        .map(|a| {
            if a == "{OUT}" {
                out.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut cmd = job.artifact.compiler.command();
    cmd.args(&args);
    let output = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", job.artifact.compiler.argv()[0]))?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!(
            "building {} failed: {} {}\n{}",
            job.artifact.name,
            job.artifact.compiler.argv().join(" "),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Another process may have finished the same build meanwhile: theirs is as good.
    if fs::rename(&tmp, &job.dir).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        if !job.dir.is_dir() {
            return Err(format!("could not move {} into place", job.dir.display()));
        }
    }
    Ok(())
}

/// Runs jobs on [`BUILD_THREADS`] threads; panics listing every failure.
fn run_jobs(jobs: &[Job]) {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..BUILD_THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if let Err(e) = run_job(job) {
                    errors.lock().unwrap().push(e);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "padtrim-testsuite: corpus build failed:\n{}",
        errors.join("\n")
    );
}

/// Builds (or finds cached) every spec; returns artifacts in spec order.
pub(crate) fn build_all(specs: &[Spec], cache_root: &Path) -> Vec<Artifact> {
    let generated_dir = cache_root.join("generated");
    write_generated_sources(&generated_dir);
    let compilers: Vec<Compiler> = specs.iter().map(|s| s.compiler).collect();
    let versions = compiler_versions(&compilers);

    // Phase 1: everything that does not link against the corpus library.
    let mut libs = HashMap::new();
    let first: Vec<Job> = specs
        .iter()
        .filter(|s| s.program != "use_shared" || s.object)
        .map(|s| plan(s, &generated_dir, cache_root, &versions, &libs))
        .collect();
    run_jobs(&first);
    for (spec, job) in specs
        .iter()
        .filter(|s| s.program != "use_shared" || s.object)
        .zip(&first)
    {
        if job.artifact.kind == ArtifactKind::SharedLib {
            libs.insert(variant_key(spec), job.artifact.path.clone());
        }
    }
    // Phase 2: programs using the library (their cache key includes the library's path,
    // which carries the library's own hash).
    let second: Vec<Job> = specs
        .iter()
        .filter(|s| s.program == "use_shared" && !s.object)
        .map(|s| plan(s, &generated_dir, cache_root, &versions, &libs))
        .collect();
    run_jobs(&second);

    let mut by_name: HashMap<String, Artifact> = first
        .into_iter()
        .chain(second)
        .map(|j| (j.artifact.name.clone(), j.artifact))
        .collect();
    specs
        .iter()
        .map(|s| by_name.remove(&artifact_name(s)).expect("artifact planned"))
        .collect()
}
