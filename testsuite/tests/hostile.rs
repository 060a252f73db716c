//! Hostile inputs: real corpus files with one header, table or symbol field corrupted the way
//! an attacker or a broken tool would. Every padtrim command must refuse them cleanly: exit 2,
//! one line on stderr naming the file and the reason, no panic, no output file, and memory
//! bounded (the CLI runs under `ulimit -v`, so an allocation sized from a corrupt field
//! aborts the process and fails the test). Per-entry damage (a site in the middle of an
//! instruction) is a finding for `check` (exit 1), as `check_cli` specifies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::{artifact, padtrim_path, report_json, run_ok, scratch_dir};

/// Address-space limit for every padtrim run, in KiB (the inputs are at most a few MB).
const MEMORY_LIMIT_KIB: u64 = 512 * 1024;

/// The corpus files the corruptions are applied to.
const EXE: &str = "basic-rv64gc-p8-O0-nopie";
const PIE: &str = "basic-rv64gc-p8-O2-pie";
const OBJ: &str = "basic-rv64gc-p8-O2-pie-obj";
const OBJ32: &str = "portable-rv32gc-p8-O2-obj";
/// RV64G without C: every instruction is 4 bytes, so entry + 2 is inside one.
const EXE_NO_C: &str = "basic-rv64g-p1-O2-nopie";

const TABLE: &str = "__patchable_function_entries";
const SHT_NOBITS: u32 = 8;
const SHT_RELA: u32 = 4;
const SHT_REL: u32 = 9;

/// One section header, widened to 64 bits.
#[derive(Clone, Copy, Debug)]
struct Shdr {
    name: u32,
    sh_type: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

/// A byte-level ELF editor for little-endian ELF32/ELF64: reads and writes header, section
/// header, symbol and relocation fields in place. It does no validation: that is the point.
struct Elf {
    data: Vec<u8>,
    is_64: bool,
}

impl Elf {
    fn read(path: &Path) -> Elf {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&data[..4], b"\x7fELF", "{} is not ELF", path.display());
        let is_64 = data[4] == 2;
        Elf { data, is_64 }
    }

    fn corpus(name: &str) -> Elf {
        Elf::read(&artifact(name).path)
    }

    fn get(&self, off: usize, size: usize) -> u64 {
        let mut v = 0u64;
        for i in 0..size {
            v |= u64::from(self.data[off + i]) << (8 * i);
        }
        v
    }

    fn put(&mut self, off: usize, size: usize, v: u64) {
        for i in 0..size {
            self.data[off + i] = (v >> (8 * i)) as u8;
        }
    }

    /// Word size of the class: 8 or 4.
    fn word(&self) -> usize {
        if self.is_64 {
            8
        } else {
            4
        }
    }

    /// (offset, size) of an ELF header field by name.
    fn header_field(&self, field: &str) -> (usize, usize) {
        let (o64, o32, size) = match field {
            "e_phoff" => (0x20, 0x1c, self.word()),
            "e_shoff" => (0x28, 0x20, self.word()),
            "e_phnum" => (0x38, 0x2c, 2),
            "e_shentsize" => (0x3a, 0x2e, 2),
            "e_shnum" => (0x3c, 0x30, 2),
            "e_shstrndx" => (0x3e, 0x32, 2),
            other => panic!("unknown header field {other}"),
        };
        (if self.is_64 { o64 } else { o32 }, size)
    }

    fn header(&self, field: &str) -> u64 {
        let (off, size) = self.header_field(field);
        self.get(off, size)
    }

    fn set_header(&mut self, field: &str, v: u64) {
        let (off, size) = self.header_field(field);
        self.put(off, size, v);
    }

    fn shnum(&self) -> usize {
        self.header("e_shnum") as usize
    }

    fn shdr_at(&self, i: usize) -> usize {
        self.header("e_shoff") as usize + i * self.header("e_shentsize") as usize
    }

    /// Field layout of a section header: (offset, size) for each field in [`Shdr`] order.
    fn shdr_layout(&self) -> [(usize, usize); 10] {
        if self.is_64 {
            [
                (0, 4),
                (4, 4),
                (8, 8),
                (16, 8),
                (24, 8),
                (32, 8),
                (40, 4),
                (44, 4),
                (48, 8),
                (56, 8),
            ]
        } else {
            [
                (0, 4),
                (4, 4),
                (8, 4),
                (12, 4),
                (16, 4),
                (20, 4),
                (24, 4),
                (28, 4),
                (32, 4),
                (36, 4),
            ]
        }
    }

    fn shdr(&self, i: usize) -> Shdr {
        let base = self.shdr_at(i);
        let f: Vec<u64> = self
            .shdr_layout()
            .iter()
            .map(|&(o, s)| self.get(base + o, s))
            .collect();
        Shdr {
            name: f[0] as u32,
            sh_type: f[1] as u32,
            flags: f[2],
            addr: f[3],
            offset: f[4],
            size: f[5],
            link: f[6] as u32,
            info: f[7] as u32,
            align: f[8],
            entsize: f[9],
        }
    }

    fn set_shdr(&mut self, i: usize, h: Shdr) {
        let base = self.shdr_at(i);
        let values = [
            u64::from(h.name),
            u64::from(h.sh_type),
            h.flags,
            h.addr,
            h.offset,
            h.size,
            u64::from(h.link),
            u64::from(h.info),
            h.align,
            h.entsize,
        ];
        for (&(o, s), v) in self.shdr_layout().iter().zip(values) {
            self.put(base + o, s, v);
        }
    }

    /// Applies `f` to section `i`'s header.
    fn edit(&mut self, i: usize, f: impl FnOnce(&mut Shdr)) {
        let mut h = self.shdr(i);
        f(&mut h);
        self.set_shdr(i, h);
    }

    fn name(&self, i: usize) -> String {
        let strtab = self.shdr(self.header("e_shstrndx") as usize);
        let start = (strtab.offset + u64::from(self.shdr(i).name)) as usize;
        let end = start
            + self.data[start..]
                .iter()
                .position(|&b| b == 0)
                .expect("NUL");
        String::from_utf8_lossy(&self.data[start..end]).into_owned()
    }

    /// Index of the first section called `name`.
    fn find(&self, name: &str) -> usize {
        (0..self.shnum())
            .find(|&i| self.name(i) == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// Indices of every relocation section.
    fn reloc_sections(&self) -> Vec<usize> {
        (0..self.shnum())
            .filter(|&i| matches!(self.shdr(i).sh_type, SHT_RELA | SHT_REL))
            .collect()
    }

    /// File offsets of the entries of a symbol table or relocation section.
    fn entries(&self, i: usize) -> Vec<usize> {
        let h = self.shdr(i);
        let size = match (h.sh_type, self.is_64) {
            (2, true) => 24,
            (2, false) => 16,
            (SHT_RELA, true) => 24,
            (SHT_RELA, false) => 12,
            (SHT_REL, true) => 16,
            (SHT_REL, false) => 8,
            (t, _) => panic!("section {i} of type {t} has no entries"),
        };
        (0..(h.size / size) as usize)
            .map(|k| h.offset as usize + k * size as usize)
            .collect()
    }

    /// Sets the symbol index of the relocation entry at `at`.
    fn set_reloc_sym(&mut self, at: usize, sym: u64) {
        let w = self.word();
        let info = self.get(at + w, w);
        let new = if self.is_64 {
            (sym << 32) | (info & 0xffff_ffff)
        } else {
            (sym << 8) | (info & 0xff)
        };
        self.put(at + w, w, new);
    }

    /// Sets `st_shndx` of the symbol entry at `at`.
    fn set_sym_shndx(&mut self, at: usize, shndx: u16) {
        let off = if self.is_64 { 6 } else { 14 };
        self.put(at + off, 2, u64::from(shndx));
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.data).expect("write hostile input");
        path
    }
}

/// A huge size for the file's class.
fn huge(e: &Elf) -> u64 {
    if e.is_64 {
        1 << 62
    } else {
        0xffff_fff0
    }
}

/// Runs padtrim with `args` under the address-space limit.
fn run_limited(args: &[&str], file: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(padtrim_path())
        .args(args)
        .arg(file)
        .output()
        .expect("run padtrim under sh")
}

/// The commands every input goes through: report (text and JSON), check, rewrite.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmd {
    Report,
    ReportJson,
    Check,
    Rewrite,
}

const ALL: [Cmd; 4] = [Cmd::Report, Cmd::ReportJson, Cmd::Check, Cmd::Rewrite];

/// Runs `cmd` on `file`; returns (exit code, stderr). For rewrite, asserts that no output
/// file (nor a temporary one) was left when it failed.
fn run(cmd: Cmd, file: &Path) -> (Option<i32>, String) {
    let out_dir = file.with_extension("out.d");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("create output dir");
    let out_file = out_dir.join("rewritten");
    let out_text = out_file.to_string_lossy().into_owned();
    let args: Vec<&str> = match cmd {
        Cmd::Report => vec!["report"],
        Cmd::ReportJson => vec!["report", "--json"],
        Cmd::Check => vec!["check", "--max-pad", "64"],
        Cmd::Rewrite => vec!["rewrite", "-o", &out_text],
    };
    let out = run_limited(&args, file);
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if cmd == Cmd::Rewrite && code != Some(0) {
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .expect("read output dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        assert!(
            left.is_empty(),
            "rewrite {} failed but left {left:?} behind",
            file.display()
        );
    }
    (code, stderr)
}

/// Asserts the unusable-input contract for every command: exit 2, no panic, one line on
/// stderr naming the file and containing `reason`.
fn assert_refused(file: &Path, reason: &str) {
    assert_refused_by(file, reason, &ALL);
}

fn assert_refused_by(file: &Path, reason: &str, cmds: &[Cmd]) {
    let name = file.to_string_lossy();
    for &cmd in cmds {
        let (code, stderr) = run(cmd, file);
        let what = format!("{cmd:?} {name}");
        assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
        assert!(
            !stderr.contains("memory allocation"),
            "{what} ran out of its {MEMORY_LIMIT_KIB} KiB:\n{stderr}"
        );
        assert_eq!(code, Some(2), "{what}: exit {code:?}, stderr:\n{stderr}");
        let line = stderr.trim_end_matches('\n');
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "{what}: stderr is not one line:\n{stderr}"
        );
        assert!(
            line.contains(&*name),
            "{what}: does not name the file: {line}"
        );
        assert!(
            line.contains(reason),
            "{what}: does not say {reason:?}: {line}"
        );
    }
}

/// Writes the corrupted file for `case` built from corpus file `source` and checks it.
fn refused(source: &str, case: &str, reason: &str, corrupt: impl FnOnce(&mut Elf)) {
    let dir = scratch_dir(&format!("hostile_{case}_{source}"));
    let mut elf = Elf::corpus(source);
    corrupt(&mut elf);
    assert_refused(&elf.write(&dir, case), reason);
}

#[test]
fn sections_claiming_huge_sizes() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "table-huge", "extends past the end of the file", |e| {
            let (t, n) = (e.find(TABLE), huge(e));
            e.edit(t, |h| h.size = n);
        });
        refused(src, "text-huge", "extends past the end of the file", |e| {
            let (t, n) = (e.find(".text"), huge(e));
            e.edit(t, |h| h.size = n);
        });
        refused(
            src,
            "symtab-huge",
            "extends past the end of the file",
            |e| {
                let (t, n) = (e.find(".symtab"), huge(e));
                e.edit(t, |h| h.size = n);
            },
        );
        refused(
            src,
            "shstrtab-huge",
            "extends past the end of the file",
            |e| {
                let (t, n) = (e.header("e_shstrndx") as usize, huge(e));
                e.edit(t, |h| h.size = n);
            },
        );
        refused(src, "table-nobits", "SHT_NOBITS", |e| {
            let t = e.find(TABLE);
            e.edit(t, |h| h.sh_type = SHT_NOBITS);
        });
    }
    // A code section without bytes that claims most of the address space.
    for src in [EXE, PIE] {
        refused(src, "text-nobits-huge", "overlap in memory", |e| {
            let (t, n) = (e.find(".text"), huge(e));
            e.edit(t, |h| {
                h.sh_type = SHT_NOBITS;
                h.size = n;
            });
        });
    }
}

#[test]
fn huge_header_counts() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "shnum-huge", "section headers", |e| {
            e.set_header("e_shnum", 0xfff0)
        });
        // Extended numbering: e_shnum 0, the real count in section 0's sh_size.
        refused(src, "shnum-extended-huge", "section headers", |e| {
            e.set_header("e_shnum", 0);
            e.edit(0, |h| h.size = 0xffff_ffff);
        });
        refused(src, "shstrndx-out-of-range", "e_shstrndx", |e| {
            e.set_header("e_shstrndx", 0xfef0)
        });
    }
    for src in [EXE, PIE] {
        refused(src, "phnum-huge", "program headers", |e| {
            e.set_header("e_phnum", 0xfff0)
        });
    }
}

#[test]
fn overlapping_sections() {
    for src in [EXE, PIE] {
        refused(src, "rodata-inside-text", "overlap in memory", |e| {
            let (text, rodata) = (e.find(".text"), e.find(".rodata"));
            let at = e.shdr(text).addr + 16;
            e.edit(rodata, |h| h.addr = at);
        });
    }
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "table-bytes-in-text", "overlap in the file", |e| {
            let (text, table) = (e.find(".text"), e.find(TABLE));
            let off = e.shdr(text).offset;
            e.edit(table, |h| h.offset = off);
        });
    }
}

#[test]
fn relocation_indices_out_of_range() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "reloc-info-out-of-range", "does not exist", |e| {
            for r in e.reloc_sections() {
                e.edit(r, |h| h.info = 0xfff0);
            }
        });
        refused(src, "reloc-link-out-of-range", "does not exist", |e| {
            for r in e.reloc_sections() {
                e.edit(r, |h| h.link = 0xfff0);
            }
        });
        refused(src, "reloc-link-to-itself", "not a symbol table", |e| {
            for r in e.reloc_sections() {
                e.edit(r, |h| h.link = r as u32);
            }
        });
        refused(src, "reloc-symbol-out-of-range", "refers to symbol", |e| {
            for r in e.reloc_sections() {
                for at in e.entries(r) {
                    e.set_reloc_sym(at, 0xfff);
                }
            }
        });
        // The first relocation of .text that applies to something (an R_RISCV_NONE may be
        // anywhere) moved past the section's end. An object's scan needs these (alignment
        // relaxation), a linked file's does not: there only the rewriter refuses.
        let dir = scratch_dir(&format!("hostile_reloc_offset_outside_{src}"));
        let mut e = Elf::corpus(src);
        let text = e.find(".text");
        let rela = e
            .reloc_sections()
            .into_iter()
            .find(|&r| e.shdr(r).info as usize == text)
            .expect(".text relocations");
        let w = e.word();
        let type_mask = if e.is_64 { 0xffff_ffff } else { 0xff };
        let first = e
            .entries(rela)
            .into_iter()
            .find(|&at| e.get(at + w, w) & type_mask != 0)
            .expect("a .text relocation other than R_RISCV_NONE");
        let h = e.shdr(text);
        e.put(first, w, h.addr + h.size + 0x100);
        let path = e.write(&dir, "reloc-offset-outside-its-section");
        if src == OBJ || src == OBJ32 {
            assert_refused(&path, "outside the section");
        } else {
            let original = report_json(&artifact(src).path);
            assert_eq!(report_json(&path)["sites"], original["sites"], "{src}");
            assert_eq!(run(Cmd::Check, &path).0, Some(0), "{src}: check");
            assert_refused_by(&path, "outside the section", &[Cmd::Rewrite]);
        }
        refused(src, "symbol-section-out-of-range", "does not exist", |e| {
            let symtab = e.find(".symtab");
            for at in e.entries(symtab).into_iter().skip(1) {
                e.set_sym_shndx(at, 0xfee0);
            }
        });
    }
}

#[test]
fn sections_outside_their_segments() {
    for src in [EXE, PIE] {
        // The fuzzer's find: a note moved 3 MiB away from where its segment loads it.
        refused(
            src,
            "note-moved-out-of-its-segment",
            "loadable segment",
            |e| {
                let note = e.find(".note.ABI-tag");
                e.edit(note, |h| h.addr += 0x30_0000);
            },
        );
        refused(src, "segment-past-end-of-file", "loadable segment", |e| {
            let phoff = e.header("e_phoff") as usize;
            let phnum = e.header("e_phnum") as usize;
            let (size, filesz_at) = if e.is_64 { (56, 32) } else { (32, 16) };
            for i in 0..phnum {
                let at = phoff + i * size;
                if e.get(at, 4) == 1 {
                    let w = e.word();
                    e.put(at + filesz_at, w, 1 << 30);
                }
            }
        });
    }
}

#[test]
fn function_symbols_far_outside_their_section() {
    // Symbols are not the table: report still finds every pad (without names), but the
    // rewriter must refuse to move code around symbols it cannot place.
    for src in [EXE, PIE] {
        let dir = scratch_dir(&format!("hostile_symbols_outside_{src}"));
        let mut e = Elf::corpus(src);
        let symtab = e.find(".symtab");
        for at in e.entries(symtab).into_iter().skip(1) {
            e.put(at + 8, 8, 0xffff_ffff_ffff_fff0);
        }
        let path = e.write(&dir, "symbols-at-top-of-memory");
        let original = report_json(&artifact(src).path);
        let report = report_json(&path);
        assert_eq!(report["sites"], original["sites"], "{src}: sites changed");
        assert_refused_by(&path, "refusing to rewrite", &[Cmd::Rewrite]);
    }
}

#[test]
fn function_sizes_claiming_all_memory() {
    // A function's end (value + size) past the top of the address space: the rewriter
    // must neither overflow computing the new size nor write a file that lies about it.
    for src in [EXE, PIE] {
        let dir = scratch_dir(&format!("hostile_function_sizes_{src}"));
        let mut e = Elf::corpus(src);
        let symtab = e.find(".symtab");
        for at in e.entries(symtab).into_iter().skip(1) {
            if e.data[at + 4] & 0xf == 2 {
                // STT_FUNC: st_size at +16.
                e.put(at + 16, 8, 0xffff_ffff_ffff_fff0);
            }
        }
        let path = e.write(&dir, "function-sizes-huge");
        let original = report_json(&artifact(src).path);
        assert_eq!(report_json(&path)["sites"], original["sites"], "{src}");
        assert_refused_by(&path, "", &[Cmd::Rewrite]);
    }
}

#[test]
fn sh_link_loops() {
    // .symtab naming itself as its string table: padtrim must not read symbols as names.
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "symtab-links-itself", "string section", |e| {
            let s = e.find(".symtab");
            e.edit(s, |h| h.link = s as u32);
        });
    }
    // Links padtrim has no reason to follow (the string table's, the table's link-order
    // section) pointing in a cycle: nothing to refuse, and the report must not change.
    for src in [EXE, PIE, OBJ, OBJ32] {
        let dir = scratch_dir(&format!("hostile_link_cycle_{src}"));
        let original = report_json(&artifact(src).path);
        let mut e = Elf::corpus(src);
        let (symtab, table) = (e.find(".symtab"), e.find(TABLE));
        let strtab = e.shdr(symtab).link as usize;
        e.edit(strtab, |h| h.link = symtab as u32);
        e.edit(table, |h| h.link = table as u32);
        let path = e.write(&dir, "link-cycle");
        let report = report_json(&path);
        assert_eq!(
            report["functions"], original["functions"],
            "{src}: a link cycle changed the report"
        );
    }
}

#[test]
fn misaligned_tables() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(
            src,
            "table-size-not-whole-entries",
            "not a whole number",
            |e| {
                let t = e.find(TABLE);
                e.edit(t, |h| h.size -= 3);
            },
        );
    }
    // Shifted by half a pointer (and one entry shorter, so it overlaps nothing).
    for src in [EXE, PIE] {
        refused(src, "table-address-misaligned", "is not aligned", |e| {
            let t = e.find(TABLE);
            e.edit(t, |h| {
                h.addr += 4;
                h.offset += 4;
                h.size -= 8;
            });
        });
    }
    // In an object file the entries are relocations: one off the entry grid.
    for src in [OBJ, OBJ32] {
        refused(src, "table-relocation-misaligned", "not an entry", |e| {
            let t = e.find(TABLE);
            let rela = e
                .reloc_sections()
                .into_iter()
                .find(|&r| e.shdr(r).info as usize == t)
                .expect("table relocations");
            let first = e.entries(rela)[0];
            let w = e.word();
            let off = e.get(first, w);
            e.put(first, w, off + 2);
        });
    }
}

#[test]
fn table_entry_in_the_middle_of_an_instruction() {
    let dir = scratch_dir("hostile_mid_instruction");
    let mut e = Elf::corpus(EXE_NO_C);
    let table = e.shdr(e.find(TABLE));
    let first = table.offset as usize;
    let entry = e.get(first, 8);
    // Every instruction is 4 bytes without the C extension: entry + 2 is inside the nop.
    e.put(first, 8, entry + 2);
    let path = e.write(&dir, "entry-plus-2");
    let reason = "middle of an instruction";
    assert_refused_by(&path, reason, &[Cmd::Report, Cmd::ReportJson]);
    assert_refused_by(&path, "refusing to rewrite", &[Cmd::Rewrite]);
    // The CI gate reports the bad entry as a finding: exit 1, naming its address.
    let out = run_limited(&["check", "--max-pad", "64"], &path);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "check:\n{text}");
    assert!(
        text.contains(&format!("{:#x}", entry + 2)) && text.contains(reason),
        "check does not name the entry:\n{text}"
    );
}

#[test]
fn truncated_files() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        let dir = scratch_dir(&format!("hostile_truncated_{src}"));
        let e = Elf::corpus(src);
        let text = e.shdr(e.find(".text"));
        let shoff = e.header("e_shoff") as usize;
        let mut cuts = vec![
            1,
            17,
            40,
            e.header("e_phoff") as usize + 10,
            (text.offset + text.size / 2) as usize,
            shoff,
            shoff + 100,
            e.data.len() - 1,
        ];
        cuts.retain(|&c| c > 0 && c < e.data.len());
        for cut in cuts {
            let path = dir.join(format!("first-{cut}-bytes"));
            std::fs::write(&path, &e.data[..cut]).expect("write truncated file");
            // Any reason will do, as long as it is one clear line.
            assert_refused(&path, "");
        }
    }
}

#[test]
fn string_tables_without_nuls() {
    for src in [EXE, PIE, OBJ, OBJ32] {
        refused(src, "shstrtab-without-nul", "NUL-terminated", |e| {
            let h = e.shdr(e.header("e_shstrndx") as usize);
            let range = h.offset as usize..(h.offset + h.size) as usize;
            e.data[range].iter_mut().for_each(|b| *b = b'x');
        });
        // The fuzzer's find: the name table typed SHT_NULL (readers still find the names
        // through e_shstrndx; writers rebuilding it by type lost them).
        refused(src, "shstrtab-not-a-string-table", "not SHT_STRTAB", |e| {
            let i = e.header("e_shstrndx") as usize;
            e.edit(i, |h| h.sh_type = 0);
        });
        refused(src, "strtab-without-nul", "NUL-terminated", |e| {
            let h = e.shdr(e.find(".strtab"));
            let range = h.offset as usize..(h.offset + h.size) as usize;
            e.data[range].iter_mut().for_each(|b| *b = b'y');
        });
    }
}

/// A vmlinux-shaped program: `__start_mcount_loc`..`__stop_mcount_loc` around the pad table,
/// and an `__ex_table` entry (`int insn, fixup; short type, data;`, PC-relative) on a load.
const KERNEL_LIKE_C: &str = r#"
int probe(int *p) {
  int v = 0;
  asm volatile("1: lw %0, 0(%1)\n2:\n"
      ".pushsection __ex_table,\"a\"\n.balign 4\n.long 1b - .\n.long 2b - .\n"
      ".short 0\n.short 0\n.popsection"
      : "+r"(v) : "r"(p));
  return v;
}
int twice(int x) { return 2 * x; }
int word;
void _start(void) { for (;;) word = twice(probe(&word)); }
"#;

const KERNEL_LIKE_LDS: &str = r#"
ENTRY(_start)
SECTIONS {
  . = 0x80200000;
  .text : { *(.text .text.*) }
  .rodata : { *(.rodata .rodata.*) }
  __ex_table : ALIGN(4) { *(__ex_table) }
  .init.data : ALIGN(8) {
    __start_mcount_loc = .; KEEP(*(__patchable_function_entries)) __stop_mcount_loc = .;
  }
  .data : { *(.data .data.* .sdata .sdata.*) }
  .bss : { *(.bss .bss.* .sbss .sbss.*) }
}
"#;

/// Reads `len` bytes at virtual address `addr` of a linked file.
fn bytes_at(e: &Elf, addr: u64, len: usize) -> Vec<u8> {
    let i = (1..e.shnum())
        .find(|&i| {
            let h = e.shdr(i);
            h.flags & 2 != 0 && h.sh_type != SHT_NOBITS && addr >= h.addr && addr < h.addr + h.size
        })
        .unwrap_or_else(|| panic!("no section holds {addr:#x}"));
    let h = e.shdr(i);
    let at = (h.offset + addr - h.addr) as usize;
    e.data[at..at + len].to_vec()
}

/// (entry address, faulting instruction address) of every `__ex_table` entry.
fn ex_table(e: &Elf) -> Vec<(u64, u64)> {
    let h = e.shdr(e.find("__ex_table"));
    (0..h.size / 12)
        .map(|k| {
            let entry = h.addr + 12 * k;
            let insn = e.get((h.offset + 12 * k) as usize, 4) as u32 as i32;
            (entry, entry.wrapping_add(insn as i64 as u64))
        })
        .collect()
}

#[test]
fn vmlinux_with_erased_ex_table_relocations() {
    // The kernel's sorttable zeroes `.rela__ex_table` after linking; the rewriter decodes
    // the table from its bytes and must not trip over the zeroed entries (offset 0, far
    // below the section). Built here, then erased the same way.
    let dir = scratch_dir("hostile_erased_ex_table");
    std::fs::write(dir.join("k.c"), KERNEL_LIKE_C).expect("write source");
    std::fs::write(dir.join("k.lds"), KERNEL_LIKE_LDS).expect("write linker script");
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(&dir)
            .args([
                "-O2",
                "-march=rv64gc",
                "-mabi=lp64d",
                "-mcmodel=medany",
                "-fpatchable-function-entry=8",
                "-nostdlib",
                "-static",
                "-Wl,-q,--no-relax",
                "-T",
                "k.lds",
                "k.c",
                "-o",
                "vmlinux",
            ]),
        "riscv64-linux-gnu-gcc (run scripts/setup)",
    );
    let mut e = Elf::read(&dir.join("vmlinux"));
    let rela = e.shdr(e.find(".rela__ex_table"));
    assert!(rela.size > 0, "the table has relocations to erase");
    let range = rela.offset as usize..(rela.offset + rela.size) as usize;
    e.data[range].iter_mut().for_each(|b| *b = 0);
    let input = e.write(&dir, "vmlinux-erased");

    let output = dir.join("vmlinux-rewritten");
    let out = Command::new(padtrim_path())
        .args(["rewrite", "--slot", "8"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .expect("run padtrim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "rewrite panicked:\n{stderr}");
    assert!(out.status.success(), "rewrite failed:\n{stderr}");

    // Every entry still names the same load instruction, now moved by the pad cuts.
    let new = Elf::read(&output);
    let (before, after) = (ex_table(&e), ex_table(&new));
    assert_eq!(before.len(), after.len());
    assert!(!before.is_empty());
    for ((_, old_insn), (_, new_insn)) in before.iter().zip(&after) {
        assert_ne!(
            old_insn, new_insn,
            "the load did not move: the test proves nothing"
        );
        assert_eq!(
            bytes_at(&e, *old_insn, 2),
            bytes_at(&new, *new_insn, 2),
            "__ex_table entry for {old_insn:#x} now points at {new_insn:#x}, another instruction"
        );
    }
}

/// An input whose rewrite through the builder writer would not parse again (a fuzzing find:
/// a segment claiming 64 TiB of memory that the builder's compacted file cannot back) is
/// refused by `rewrite` with and without verification: the output is read back either way,
/// and nothing is written.
#[test]
fn rewrite_whose_output_would_be_malformed() {
    let saved = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rewriter/tests/fuzz-regressions/rewrite/segment-memsz-huge-output-7e465a0f");
    let data = std::fs::read(&saved).unwrap_or_else(|e| panic!("{}: {e}", saved.display()));
    let dir = scratch_dir("hostile_output_malformed");
    // The first byte is the fuzz target's option selector; the ELF follows.
    let input = dir.join("input");
    std::fs::write(&input, &data[1..]).expect("write input");
    for extra in [None, Some("--no-verify")] {
        let out_dir = dir.join(format!("out{}", extra.unwrap_or("")));
        std::fs::create_dir_all(&out_dir).expect("create output dir");
        let out_file = out_dir.join("rewritten").to_string_lossy().into_owned();
        let mut args = vec!["rewrite", "--writer", "builder", "-o", &out_file];
        args.extend(extra);
        let out = run_limited(&args, &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let line = stderr.trim_end_matches('\n');
        assert!(!line.contains('\n') && line.contains(&*input.to_string_lossy()));
        assert!(line.contains("would be malformed"), "{args:?}: {line}");
        assert_eq!(std::fs::read_dir(&out_dir).expect("read dir").count(), 0);
    }
}
