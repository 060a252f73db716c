//! Ground truth from GNU binutils: parse what `riscv64-linux-gnu-readelf` and `-objdump`
//! print, so tests can compare padtrim's view of a file with an independent one.
//!
//! Every function panics with the command and the offending line if binutils fails or
//! prints something unexpected: these are test helpers, and a parse error is a test failure.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// `readelf` for RISC-V (reads ELF32 and ELF64).
pub const READELF: &str = "riscv64-linux-gnu-readelf";
/// `objdump` for RISC-V.
pub const OBJDUMP: &str = "riscv64-linux-gnu-objdump";

/// One row of `readelf -SW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Section header index.
    pub index: usize,
    /// Section name (empty for index 0).
    pub name: String,
    /// Section type as readelf spells it (`PROGBITS`, `RELA`, `NOBITS`, ...).
    pub kind: String,
    /// sh_addr.
    pub address: u64,
    /// sh_offset (file offset).
    pub offset: u64,
    /// sh_size.
    pub size: u64,
    /// sh_entsize.
    pub entsize: u64,
    /// Flag letters (`AX`, `WAL`, ...), empty if none.
    pub flags: String,
    /// sh_link.
    pub link: u32,
    /// sh_info.
    pub info: u32,
    /// sh_addralign.
    pub align: u64,
}

/// One relocation from `readelf -rW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// r_offset.
    pub offset: u64,
    /// r_info (symbol index and type).
    pub info: u64,
    /// Type name, e.g. `R_RISCV_64`.
    pub kind: String,
    /// Symbol value, if the relocation has a symbol.
    pub symbol_value: Option<u64>,
    /// Symbol name (may be a section name or versioned name); empty if none.
    pub symbol: String,
    /// r_addend.
    pub addend: i64,
}

/// A relocation section and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationSection {
    /// Name, e.g. `.rela__patchable_function_entries` (not unique in objects built with
    /// `-ffunction-sections`; use `offset` to match a section header).
    pub name: String,
    /// File offset of the section (sh_offset), as readelf prints it.
    pub offset: u64,
    /// Entries in file order.
    pub entries: Vec<Relocation>,
}

impl Relocation {
    /// Index of the relocation's symbol in the symbol table its section links to.
    pub fn symbol_index(&self, class64: bool) -> usize {
        if class64 {
            (self.info >> 32) as usize
        } else {
            (self.info >> 8) as usize
        }
    }
}

/// One row of the `.symtab` listing of `readelf -sW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Index in `.symtab`.
    pub index: usize,
    /// st_value.
    pub value: u64,
    /// st_size.
    pub size: u64,
    /// `FUNC`, `OBJECT`, `NOTYPE`, `SECTION`, ...
    pub kind: String,
    /// `LOCAL`, `GLOBAL`, `WEAK`.
    pub bind: String,
    /// Section index, `None` for `UND`, `ABS`, `COM`.
    pub section_index: Option<usize>,
    /// Symbol name, not demangled.
    pub name: String,
}

/// One instruction line of `objdump -d -w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insn {
    /// The section it was disassembled from.
    pub section: String,
    /// Address (section offset in a relocatable object).
    pub address: u64,
    /// The instruction word as objdump prints it (RISC-V: the parcel value, not bytes).
    pub word: u32,
    /// Length in bytes (2 or 4).
    pub len: u32,
    /// Mnemonic as printed (aliases on, so `c.nop` prints as `nop`; use `word`).
    pub mnemonic: String,
    /// Operand text, possibly empty.
    pub operands: String,
}

impl Insn {
    /// `c.nop` (0x0001).
    pub fn is_c_nop(&self) -> bool {
        self.len == 2 && self.word == 0x0001
    }
    /// 32-bit `nop` (`addi x0, x0, 0` = 0x00000013).
    pub fn is_nop(&self) -> bool {
        self.len == 4 && self.word == 0x0000_0013
    }
}

/// Everything readelf (given `readelf_args`) and objdump (given `objdump_args`) print on
/// stderr for `path`: their warnings, empty for a well-formed file.
pub fn warnings(path: &Path, readelf_args: &[&str], objdump_args: &[&str]) -> String {
    let mut all = String::new();
    for (tool, args) in [(READELF, readelf_args), (OBJDUMP, objdump_args)] {
        let out = Command::new(tool)
            .args(args)
            .arg(path)
            .output()
            .expect("binutils");
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

/// Runs a binutils tool and returns its stdout; panics on failure.
fn run(tool: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e} (run scripts/setup)"));
    assert!(
        out.status.success(),
        "{tool} {} {} failed: {}",
        args.join(" "),
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(s: &str, line: &str) -> u64 {
    let s = s.trim_start_matches("0x");
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex {s:?} in readelf line {line:?}"))
}

fn dec_or_hex(s: &str, line: &str) -> u64 {
    if s.starts_with("0x") {
        hex(s, line)
    } else {
        s.parse()
            .unwrap_or_else(|_| panic!("bad number {s:?} in line {line:?}"))
    }
}

/// The section table (`readelf -SW`), index 0 included.
pub fn sections(path: &Path) -> Vec<Section> {
    let text = run(READELF, &["-SW"], path);
    let mut out = Vec::new();
    for line in text.lines() {
        let line_t = line.trim_start();
        let Some(rest) = line_t.strip_prefix('[') else {
            continue;
        };
        let Some((idx, rest)) = rest.split_once(']') else {
            continue;
        };
        let Ok(index) = idx.trim().parse::<usize>() else {
            continue;
        }; // the "[Nr]" header
        let t: Vec<&str> = rest.split_whitespace().collect();
        // Name is absent only for the null section; flags may be absent.
        let (name, t) = if index == 0 {
            ("", &t[..])
        } else {
            (t[0], &t[1..])
        };
        let (kind, addr, off, size, es) = (t[0], t[1], t[2], t[3], t[4]);
        let (flags, lk, inf, al) = match t.len() {
            9 => (t[5], t[6], t[7], t[8]),
            8 => ("", t[5], t[6], t[7]),
            _ => panic!("unexpected readelf -S line {line:?}"),
        };
        out.push(Section {
            index,
            name: name.to_string(),
            kind: kind.to_string(),
            address: hex(addr, line),
            offset: hex(off, line),
            size: hex(size, line),
            entsize: hex(es, line),
            flags: flags.to_string(),
            link: lk
                .parse()
                .unwrap_or_else(|_| panic!("bad link in {line:?}")),
            info: inf
                .parse()
                .unwrap_or_else(|_| panic!("bad info in {line:?}")),
            align: al
                .parse()
                .unwrap_or_else(|_| panic!("bad align in {line:?}")),
        });
    }
    assert!(
        !out.is_empty(),
        "readelf printed no sections for {}",
        path.display()
    );
    out
}

/// Every relocation section (`readelf -rW`), dynamic ones (`.rela.dyn`) included.
pub fn relocations(path: &Path) -> Vec<RelocationSection> {
    let text = run(READELF, &["-rW"], path);
    let mut out: Vec<RelocationSection> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Relocation section '") {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            let offset = rest
                .split_once(" at offset ")
                .and_then(|(_, o)| o.split_whitespace().next())
                .map(|o| hex(o, line))
                .unwrap_or_else(|| panic!("no offset in {line:?}"));
            out.push(RelocationSection {
                name,
                offset,
                entries: Vec::new(),
            });
            continue;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 3 || !t[2].starts_with("R_") {
            continue;
        }
        let Some(section) = out.last_mut() else {
            continue;
        };
        let offset = hex(t[0], line);
        let info = hex(t[1], line);
        let kind = t[2].to_string();
        let rest = &t[3..];
        let (symbol_value, symbol, addend) = match rest {
            [] => (None, String::new(), 0),
            [a] => (None, String::new(), hex(a, line) as i64),
            ["-", a] => (None, String::new(), -(hex(a, line) as i64)),
            [v, name @ .., sign, a] if *sign == "+" || *sign == "-" => {
                let a = hex(a, line) as i64;
                (
                    Some(hex(v, line)),
                    name.join(" "),
                    if *sign == "-" { -a } else { a },
                )
            }
            [v, name @ ..] => (Some(hex(v, line)), name.join(" "), 0),
        };
        section.entries.push(Relocation {
            offset,
            info,
            kind,
            symbol_value,
            symbol,
            addend,
        });
    }
    out
}

/// The static symbol table (`.symtab` part of `readelf -sW`).
pub fn symbols(path: &Path) -> Vec<Symbol> {
    let text = run(READELF, &["-sW"], path);
    let mut out = Vec::new();
    let mut in_symtab = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Symbol table '") {
            in_symtab = rest.starts_with(".symtab'");
            continue;
        }
        if !in_symtab {
            continue;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 7 || !t[0].ends_with(':') || t[0] == "Num:" {
            continue;
        }
        // Visibility can carry a bracketed suffix (e.g. "[VARIANT_CC]") before Ndx.
        let mut i = 5;
        while i + 1 < t.len() && t[i + 1].starts_with('[') {
            i += 1;
        }
        let ndx = t[i + 1];
        out.push(Symbol {
            index: t[0]
                .trim_end_matches(':')
                .parse()
                .unwrap_or_else(|_| panic!("bad symbol index in {line:?}")),
            value: hex(t[1], line),
            size: dec_or_hex(t[2], line),
            kind: t[3].to_string(),
            bind: t[4].to_string(),
            section_index: ndx.parse().ok(),
            name: t.get(i + 2..).map(|n| n.join(" ")).unwrap_or_default(),
        });
    }
    out
}

/// The ELF header fields tests care about (`readelf -h`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// ELFCLASS64 (else ELFCLASS32).
    pub class64: bool,
    /// e_type as readelf names it: `REL`, `EXEC` or `DYN`.
    pub elf_type: String,
    /// e_flags.
    pub flags: u32,
}

impl Header {
    /// Pointer size in bytes (8 or 4).
    pub fn pointer_size(&self) -> u64 {
        if self.class64 {
            8
        } else {
            4
        }
    }
}

/// The ELF header (`readelf -h`).
pub fn header(path: &Path) -> Header {
    let text = run(READELF, &["-h"], path);
    let field = |name: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("readelf -h {} prints no {name}", path.display()));
        line.split_once(':')
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("Flags:");
    let flags = flags
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .unwrap_or("");
    Header {
        class64: field("Class:") == "ELF64",
        elf_type: field("Type:")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        flags: hex(flags, "Flags") as u32,
    }
}

/// EF_RISCV_RVC: the file contains compressed instructions.
pub const EF_RISCV_RVC: u32 = 0x1;

/// Disassembly of every executable section (`objdump -d -w`), in file order.
pub fn disassemble(path: &Path) -> Vec<Insn> {
    parse_disassembly(&run(OBJDUMP, &["-d", "-w"], path))
}

/// Disassembly of one section (`objdump -d -w -j SECTION`).
pub fn disassemble_section(path: &Path, section: &str) -> Vec<Insn> {
    parse_disassembly(&run(OBJDUMP, &["-d", "-w", "-j", section], path))
}

/// Where each instruction of `insns` is, by (section, address).
pub fn insn_index(insns: &[Insn]) -> HashMap<(&str, u64), usize> {
    insns
        .iter()
        .enumerate()
        .map(|(i, n)| ((n.section.as_str(), n.address), i))
        .collect()
}

/// Parses objdump's `-d -w` output.
pub fn parse_disassembly(text: &str) -> Vec<Insn> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Disassembly of section ") {
            section = rest.trim_end_matches(':').to_string();
            continue;
        }
        // "   1017c:\t0001                \tnop" / "  20:\tfe010113          \tadd\tsp,sp,-32"
        let mut parts = line.split('\t');
        let Some(addr) = parts.next() else { continue };
        let Some(addr) = addr.trim().strip_suffix(':') else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let Some(word_text) = parts.next() else {
            continue;
        };
        let word_text = word_text.trim();
        if word_text.is_empty()
            || word_text.contains(' ')
            || !word_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            continue;
        }
        let Ok(word) = u32::from_str_radix(word_text, 16) else {
            continue;
        };
        let mnemonic = parts.next().unwrap_or("").trim().to_string();
        let operands = parts.collect::<Vec<_>>().join("\t").trim().to_string();
        out.push(Insn {
            section: section.clone(),
            address,
            word,
            len: (word_text.len() / 2) as u32,
            mnemonic,
            operands,
        });
    }
    out
}

/// Bytes of a section as stored in the file (empty for `NOBITS`).
pub fn section_data(path: &Path, section: &Section) -> Vec<u8> {
    if section.kind == "NOBITS" {
        return Vec::new();
    }
    let file = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    file.get(section.offset as usize..(section.offset + section.size) as usize)
        .unwrap_or_else(|| panic!("section {} lies outside {}", section.name, path.display()))
        .to_vec()
}

/// Name of the table GCC and clang fill for `-fpatchable-function-entry`.
pub const TABLE_SECTION: &str = "__patchable_function_entries";

/// One pad recorded in the table, as binutils sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadEntry {
    /// Section holding the pad (in an object: the text section the table links to; in a
    /// linked file: the section containing `address`, empty if none does).
    pub section: String,
    /// Address of the first nop (a section offset in an object).
    pub address: u64,
}

/// The number of table entries, counted the way the brief defines it: relocations in
/// `.rela__patchable_function_entries*` for an object, else the total size of the
/// `__patchable_function_entries` sections divided by the pointer size.
pub fn table_sites(path: &Path) -> u64 {
    let hdr = header(path);
    if hdr.elf_type == "REL" {
        relocations(path)
            .iter()
            .filter(|r| {
                r.name.starts_with(".rela__patchable_function_entries")
                    || r.name.starts_with(".rel__patchable_function_entries")
            })
            .map(|r| r.entries.len() as u64)
            .sum()
    } else {
        sections(path)
            .iter()
            .filter(|s| s.name == TABLE_SECTION)
            .map(|s| s.size)
            .sum::<u64>()
            / hdr.pointer_size()
    }
}

/// Every table entry resolved to its pad address, in table order.
///
/// Objects: each relocation in a table's RELA section points at `symbol value + addend` in
/// the section of its symbol. (Not necessarily the section the table links to: GCC 12 with
/// `-ffunction-sections` and `=N,M` with M > 0 emits one table for the whole file, linked
/// to one arbitrary function's section.) Linked files: each pointer in the table, taken
/// from the `R_RISCV_RELATIVE` addend in `.rela.dyn` when there is one (PIE, shared
/// library: the stored bytes may be zero), else from the bytes.
pub fn pad_table(path: &Path) -> Vec<PadEntry> {
    let hdr = header(path);
    let secs = sections(path);
    let relocs = relocations(path);
    let mut out = Vec::new();
    if hdr.elf_type == "REL" {
        let syms = symbols(path);
        for table in secs.iter().filter(|s| s.name == TABLE_SECTION) {
            let rela = secs
                .iter()
                .find(|r| (r.kind == "RELA" || r.kind == "REL") && r.info as usize == table.index)
                .unwrap_or_else(|| {
                    panic!(
                        "no relocations for table section {} in {}",
                        table.index,
                        path.display()
                    )
                });
            let entries = relocs
                .iter()
                .find(|r| r.offset == rela.offset)
                .map(|r| r.entries.as_slice())
                .unwrap_or(&[]);
            for r in entries {
                let sym = syms
                    .iter()
                    .find(|s| s.index == r.symbol_index(hdr.class64))
                    .unwrap_or_else(|| {
                        panic!("{}: relocation {r:?} has no symbol", path.display())
                    });
                let section = sym
                    .section_index
                    .map(|i| secs[i].name.clone())
                    .unwrap_or_default();
                out.push(PadEntry {
                    section,
                    address: sym.value.wrapping_add(r.addend as u64),
                });
            }
        }
        return out;
    }
    let dynamic: std::collections::HashMap<u64, i64> = relocs
        .iter()
        .filter(|r| r.name == ".rela.dyn")
        .flat_map(|r| r.entries.iter())
        .filter(|e| e.kind == "R_RISCV_RELATIVE")
        .map(|e| (e.offset, e.addend))
        .collect();
    let ptr = hdr.pointer_size();
    for table in secs.iter().filter(|s| s.name == TABLE_SECTION) {
        let data = section_data(path, table);
        for (i, chunk) in data.chunks_exact(ptr as usize).enumerate() {
            let slot = table.address + i as u64 * ptr;
            let address = match dynamic.get(&slot) {
                Some(&addend) => addend as u64,
                None => chunk
                    .iter()
                    .rev()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
            };
            let section = secs
                .iter()
                .find(|s| {
                    s.flags.contains('A')
                        && s.address <= address
                        && address < s.address + s.size
                        && s.index != 0
                })
                .map(|s| s.name.clone())
                .unwrap_or_default();
            out.push(PadEntry { section, address });
        }
    }
    out
}
