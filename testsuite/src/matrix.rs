//! The build matrix: which program is built with which flags.
//!
//! Not the full cross product: every axis value (march, pad, opt level, linkage,
//! -ffunction-sections, object vs program, C vs C++ with gcc and clang) appears several
//! times, and every program meets every axis at least once. About 60 artifacts.

use crate::artifact::{Compiler, Linkage};

/// One row of the matrix: a program and the options to build it with.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Program name (see [`crate::Artifact::program`]).
    pub program: &'static str,
    /// Compiler driver.
    pub compiler: Compiler,
    /// `-march=` value.
    pub march: &'static str,
    /// `-fpatchable-function-entry=N,M` as (N, M); `None` builds without a table.
    pub pad: Option<(u32, u32)>,
    /// Optimisation flag.
    pub opt: &'static str,
    /// Linkage of the program (for objects: the link they are meant for).
    pub linkage: Linkage,
    /// `-ffunction-sections`.
    pub function_sections: bool,
    /// Stop at the object (`-c`).
    pub object: bool,
}

/// A combination of options shared by several programs.
#[derive(Clone, Copy)]
struct Variant {
    march: &'static str,
    pad: (u32, u32),
    opt: &'static str,
    linkage: Linkage,
    function_sections: bool,
}

const fn v(
    march: &'static str,
    pad: (u32, u32),
    opt: &'static str,
    linkage: Linkage,
    ffs: bool,
) -> Variant {
    Variant {
        march,
        pad,
        opt,
        linkage,
        function_sections: ffs,
    }
}

/// rv64gc, 8 c.nops, -O2, PIE: the common Debian build of a traced program.
const A: Variant = v("rv64gc", (8, 0), "-O2", Linkage::Pie, false);
const B: Variant = v("rv64gc", (8, 0), "-O0", Linkage::NoPie, false);
const C: Variant = v("rv64gc", (4, 0), "-O2", Linkage::Static, false);
const D: Variant = v("rv64gc", (2, 0), "-O2", Linkage::Pie, true);
const E: Variant = v("rv64gc", (8, 2), "-O2", Linkage::NoPie, true);
const F: Variant = v("rv64g", (8, 0), "-O2", Linkage::Pie, false);
/// rv64g with one 4-byte nop: already the slot padtrim aims for.
const G: Variant = v("rv64g", (1, 0), "-O2", Linkage::NoPie, false);
const H: Variant = v("rv64g", (8, 2), "-O0", Linkage::Static, false);
/// Same as A but 4 nops: the baseline partner of A for `padtrim check --baseline`.
const A4: Variant = v("rv64gc", (4, 0), "-O2", Linkage::Pie, false);
const RV32_P8: Variant = v("rv32gc", (8, 0), "-O2", Linkage::None, false);
const RV32_P4_1: Variant = v("rv32gc", (4, 1), "-O0", Linkage::None, true);

fn spec(program: &'static str, compiler: Compiler, var: Variant, object: bool) -> Spec {
    Spec {
        program,
        compiler,
        march: var.march,
        pad: Some(var.pad),
        opt: var.opt,
        linkage: var.linkage,
        function_sections: var.function_sections,
        object,
    }
}

/// Every artifact of the corpus, libraries before the programs that link them.
pub(crate) fn corpus_specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    // Plain C programs over every variant.
    for program in ["basic", "many", "control", "threads"] {
        for var in [A, B, C, D, E, F, G, H] {
            specs.push(spec(program, Compiler::Gcc, var, false));
        }
    }
    specs.push(spec("basic", Compiler::Gcc, A4, false));
    specs.push(spec("portable", Compiler::Gcc, A, false));
    // C++ through clang++ (links COMDAT pads), and one single-TU g++ program.
    for var in [A, B, D, E, F, G] {
        specs.push(spec("cxx", Compiler::Clangxx, var, false));
    }
    specs.push(spec("cxx", Compiler::Gxx, A, false));
    // The shared library and its user, built with the same options.
    for var in [A, E, F] {
        specs.push(spec(
            "shared_lib",
            Compiler::Gcc,
            Variant {
                linkage: Linkage::Shared,
                ..var
            },
            false,
        ));
    }
    for var in [A, E, F] {
        specs.push(spec("use_shared", Compiler::Gcc, var, false));
    }
    // Relocatable objects.
    for (program, compiler, var) in [
        ("basic", Compiler::Gcc, A),
        ("basic", Compiler::Gcc, E),
        ("basic", Compiler::Gcc, F),
        ("basic", Compiler::Gcc, H),
        ("many", Compiler::Gcc, A),
        ("control", Compiler::Gcc, G),
        // =4 pads and rv64gc -O0 -g: object shapes the rewrite-objects tests need.
        ("control", Compiler::Gcc, C),
        ("basic", Compiler::Gcc, B),
        ("threads", Compiler::Gcc, D),
        ("cxx", Compiler::Gxx, A),
        ("cxx", Compiler::Gxx, E),
        ("cxx", Compiler::Clangxx, A),
        (
            "shared_lib",
            Compiler::Gcc,
            Variant {
                linkage: Linkage::Shared,
                ..A
            },
        ),
        ("portable", Compiler::Gcc, RV32_P8),
        ("many", Compiler::Gcc, RV32_P4_1),
    ] {
        specs.push(spec(program, compiler, var, true));
    }
    specs
}

/// A RISC-V program built like `basic` variant B but without `-fpatchable-function-entry`.
pub(crate) fn without_table_spec() -> Spec {
    Spec {
        pad: None,
        ..spec(
            "basic",
            Compiler::Gcc,
            v("rv64gc", (0, 0), "-O2", Linkage::NoPie, false),
            false,
        )
    }
}
