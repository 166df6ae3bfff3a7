//! The running executable's own DWARF, read one compilation unit at a time.
//!
//! addr2line (behind the `backtrace` crate) indexes the ranges, the line tables and the
//! functions of *every* unit before it answers for one address, and keeps them: 100+ MiB of
//! heap and touched debug info for a large binary, for the life of the process. This reader
//! keeps only `.debug_aranges`' map of addresses to units (a few hundred KiB). An address costs
//! at most one pass over its unit's entries and line program (each pass ends once the unit's
//! addresses are placed, and skips what was inlined into functions holding none of them), read
//! from a mapping of the executable whose pages are dropped after each unit: what a stack costs
//! in memory is one unit's debug info at most, given back before the next.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fs::File;
use std::os::unix::io::AsRawFd;

use gimli::{AttributeValue, DebugInfoOffset, DwAt, EndianSlice, Reader, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSymbol};

use super::symbols::Symbol;

type Slice<'a> = EndianSlice<'a, RunTimeEndian>;
type Dwarf<'a> = gimli::Dwarf<Slice<'a>>;
type Unit<'a> = gimli::Unit<Slice<'a>>;

/// How many `DW_AT_abstract_origin`/`DW_AT_specification` links a name is followed through.
const NAME_LINKS: usize = 16;

/// How many unit headers are visited between drops of the pages read, when indexing.
const UNITS_PER_RELEASE: usize = 64;

/// Why the executable's debug info is not read here (the `backtrace` crate reads it instead).
#[derive(Debug)]
pub(super) struct Unsupported(pub(super) &'static str);

impl From<gimli::Error> for Unsupported {
    fn from(_: gimli::Error) -> Self {
        Unsupported("malformed debug info")
    }
}

impl From<object::Error> for Unsupported {
    fn from(_: object::Error) -> Self {
        Unsupported("unreadable executable")
    }
}

/// The executable, mapped read-only.
struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

// SAFETY: the mapping is private, read-only and owned: nothing else unmaps or writes it.
unsafe impl Send for Mapping {}

impl Mapping {
    fn of(file: &File) -> Result<Mapping, Unsupported> {
        let len = file
            .metadata()
            .map_err(|_| Unsupported("executable not readable"))?
            .len();
        let len = usize::try_from(len).map_err(|_| Unsupported("executable too large"))?;
        if len == 0 {
            return Err(Unsupported("empty executable"));
        }
        // SAFETY: a fresh private read-only mapping of a file we opened; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Unsupported("executable not mappable"));
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is mapped readable until `drop`; the pages are never
        // written, and a page dropped by `release` reads back the same bytes from the file.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Drops the pages read so far from this process's memory. They stay in the page cache, and
    /// are read back from it when touched again.
    fn release(&self) {
        // SAFETY: advice on our own mapping; for a private, never-written file mapping,
        // MADV_DONTNEED only unmaps pages that fault back in with the file's contents.
        unsafe {
            libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `of` and no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Addresses `begin..end` of the executable's file belong to the unit at `unit`.
#[derive(Clone, Copy)]
struct UnitRange {
    begin: u64,
    end: u64,
    unit: DebugInfoOffset<usize>,
}

/// The executable's debug info, and where the executable is loaded.
pub(super) struct Image {
    map: Mapping,
    /// Added to a file address to give the address in memory (position-independent executables).
    bias: usize,
    /// Where the executable's loadable segments are in memory.
    segments: Vec<(usize, usize)>,
    /// Sorted by `begin`; units' ranges do not overlap.
    ranges: Vec<UnitRange>,
    /// Every unit's offset, sorted: which unit holds a cross-unit reference.
    units: Vec<DebugInfoOffset<usize>>,
}

impl Image {
    /// Maps the running executable and reads its map of addresses to units.
    ///
    /// # Errors
    ///
    /// When the executable cannot be mapped, carries no DWARF, or carries it compressed.
    pub(super) fn open() -> Result<Image, Unsupported> {
        let file =
            File::open("/proc/self/exe").map_err(|_| Unsupported("executable not readable"))?;
        let map = Mapping::of(&file)?;
        let (bias, segments) = loaded_segments().ok_or(Unsupported("executable not loaded"))?;
        let (ranges, units) = {
            let object = object::File::parse(map.bytes())?;
            let dwarf = load_dwarf(&object)?;
            index_units(&dwarf, &map)?
        };
        map.release();
        Ok(Image {
            map,
            bias,
            segments,
            ranges,
            units,
        })
    }

    /// Whether `ip` is in the executable (rather than in a shared library).
    pub(super) fn contains(&self, ip: usize) -> bool {
        self.segments
            .iter()
            .any(|&(begin, end)| begin <= ip && ip < end)
    }

    /// Symbols for `addresses` (in memory, all in the executable), innermost first for each:
    /// the functions inlined at the address come before the function they were inlined into.
    pub(super) fn resolve(&self, addresses: &[usize]) -> Vec<Vec<Symbol>> {
        let mut symbols = vec![Vec::new(); addresses.len()];
        let Ok(object) = object::File::parse(self.map.bytes()) else {
            return symbols;
        };
        let Ok(dwarf) = load_dwarf(&object) else {
            return symbols;
        };
        let mut by_unit: BTreeMap<usize, Vec<Probe>> = BTreeMap::new();
        for (index, &address) in addresses.iter().enumerate() {
            let svma = address.wrapping_sub(self.bias) as u64;
            if let Some(unit) = self.unit_of(svma) {
                by_unit
                    .entry(unit.0)
                    .or_default()
                    .push(Probe { index, svma });
            }
        }
        for (offset, mut probes) in by_unit {
            probes.sort_by_key(|probe| probe.svma);
            // A unit the reader cannot read leaves its addresses to the symbol table.
            if let Ok(resolved) = self.resolve_in_unit(&dwarf, DebugInfoOffset(offset), &probes) {
                for (probe, frames) in probes.iter().zip(resolved) {
                    symbols[probe.index] = frames;
                }
            }
            self.map.release();
        }
        // An address the debug info gave no function for: nothing at all, or only a line (with
        // line tables only, a function that nothing was inlined into has no entry of its own,
        // and whether something is inlined is the optimiser's choice). Its outermost frame is
        // named from the symbol table.
        let unnamed: Vec<(usize, u64)> = addresses
            .iter()
            .enumerate()
            .filter(|&(index, _)| symbols[index].last().is_none_or(|s| s.name.is_none()))
            .map(|(index, &address)| (index, address.wrapping_sub(self.bias) as u64))
            .collect();
        if !unnamed.is_empty() {
            for (index, name) in symbol_table_names(&object, &unnamed) {
                match symbols[index].last_mut() {
                    Some(outermost) => outermost.name = Some(name),
                    None => symbols[index].push(Symbol {
                        name: Some(name),
                        filename: None,
                        lineno: None,
                        colno: None,
                    }),
                }
            }
            self.map.release();
        }
        symbols
    }

    fn unit_of(&self, svma: u64) -> Option<DebugInfoOffset<usize>> {
        let after = self.ranges.partition_point(|range| range.begin <= svma);
        let range = self.ranges.get(after.checked_sub(1)?)?;
        (svma < range.end).then_some(range.unit)
    }

    /// One pass over the unit's entries finds the functions (and inlined functions) holding
    /// each address; one pass over its line program finds each address's line.
    fn resolve_in_unit(
        &self,
        dwarf: &Dwarf<'_>,
        offset: DebugInfoOffset<usize>,
        probes: &[Probe],
    ) -> Result<Vec<Vec<Symbol>>, gimli::Error> {
        let unit = dwarf.unit(dwarf.unit_header(offset)?)?;
        let chains = function_chains(dwarf, &unit, probes)?;
        let lines = Lines::of(dwarf, &unit, probes)?;
        let mut resolved = Vec::with_capacity(probes.len());
        for (at, chain) in chains.iter().enumerate() {
            let mut frames = Vec::with_capacity(chain.len().max(1));
            // The innermost function is where the line table says; each function it was
            // inlined into is at the call site recorded on the inlined entry.
            let mut location = lines.at[at].clone();
            for function in chain.iter().rev() {
                frames.push(Symbol {
                    name: self.function_name(dwarf, &unit, &function.names),
                    filename: location.as_ref().and_then(|l| l.file.clone()),
                    lineno: location.as_ref().and_then(|l| l.line),
                    colno: location.as_ref().and_then(|l| l.column),
                });
                location = function.call.as_ref().map(|call| Location {
                    file: lines.file(dwarf, &unit, call.file),
                    line: call.line,
                    column: call.column,
                });
            }
            if frames.is_empty() {
                if let Some(location) = location {
                    // A line without a function entry: named from the symbol table below.
                    frames.push(Symbol {
                        name: None,
                        filename: location.file,
                        lineno: location.line,
                        colno: location.column,
                    });
                }
            }
            resolved.push(frames);
        }
        Ok(resolved)
    }

    /// The function's name: its linkage name demangled, or its plain name, possibly on the
    /// entry it is an instance or a definition of.
    fn function_name<'a>(
        &self,
        dwarf: &Dwarf<'a>,
        unit: &Unit<'a>,
        names: &Names<'a>,
    ) -> Option<String> {
        let mut names = *names;
        for _ in 0..NAME_LINKS {
            if let Some(value) = names.linkage.or(names.name) {
                let raw = text(dwarf.attr_string(unit, value).ok()?)?;
                return Some(demangle(&raw));
            }
            names = match names.origin? {
                AttributeValue::UnitRef(offset) => Names::of_entry(&unit.entry(offset).ok()?),
                AttributeValue::DebugInfoRef(target) => {
                    // A reference into another unit (cross-crate inlining with LTO).
                    let holder = self.units.partition_point(|unit| unit.0 <= target.0);
                    let holder = *self.units.get(holder.checked_sub(1)?)?;
                    let other = dwarf.unit(dwarf.unit_header(holder).ok()?).ok()?;
                    let local = target.to_unit_offset(&other.header)?;
                    let entry_names = Names::of_entry(&other.entry(local).ok()?);
                    return self.function_name(dwarf, &other, &entry_names);
                }
                _ => return None,
            };
        }
        None
    }
}

/// An address to resolve: the caller's index, and the address in the executable's file.
struct Probe {
    index: usize,
    svma: u64,
}

/// The attributes that name a function entry.
#[derive(Clone, Copy, Default)]
struct Names<'a> {
    linkage: Option<AttributeValue<Slice<'a>>>,
    name: Option<AttributeValue<Slice<'a>>>,
    origin: Option<AttributeValue<Slice<'a>>>,
}

impl<'a> Names<'a> {
    fn of_entry(entry: &gimli::DebuggingInformationEntry<Slice<'a>>) -> Names<'a> {
        let mut names = Names::default();
        for attr in entry.attrs() {
            names.take(attr.name(), attr.value());
        }
        names
    }

    fn take(&mut self, name: DwAt, value: AttributeValue<Slice<'a>>) -> bool {
        match name {
            gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                self.linkage = Some(value);
            }
            gimli::DW_AT_name => self.name = Some(value),
            gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                self.origin = Some(value);
            }
            _ => return false,
        }
        true
    }
}

/// Where an inlined function was called from, in the function it was inlined into.
struct CallSite {
    file: u64,
    line: Option<u32>,
    column: Option<u32>,
}

/// A function (or inlined function) entry holding an address.
struct Function<'a> {
    depth: isize,
    names: Names<'a>,
    call: Option<CallSite>,
}

/// For each probe, the function entries holding it, outermost first.
///
/// Most of a unit's function entries are inlined subroutines, and an inlined subroutine's
/// addresses are within those of the function it was inlined into. So the subtree of a function
/// entry that holds no probe is passed over without reading the addresses of the subroutines
/// inlined into it, and the pass ends once every probe's outermost function has ended: a new
/// call site costs a fraction of its unit, not all of it.
fn function_chains<'a>(
    dwarf: &Dwarf<'a>,
    unit: &Unit<'a>,
    probes: &[Probe],
) -> Result<Vec<Vec<Function<'a>>>, gimli::Error> {
    let mut chains: Vec<Vec<Function<'a>>> = probes.iter().map(|_| Vec::new()).collect();
    let mut entries = unit.header.entries_raw(&unit.abbreviations, None)?;
    let mut holding = Vec::new();
    // The function entries enclosing the current one: their depth, and whether they hold a
    // probe.
    let mut enclosing: Vec<(isize, bool)> = Vec::new();
    // Once every probe has a function: the depth of the shallowest outermost one. An entry no
    // deeper ends every probe's subtree.
    let mut done_at: Option<isize> = None;
    while !entries.is_empty() {
        let depth = entries.next_depth();
        let Some(abbrev) = entries.read_abbreviation()? else {
            continue;
        };
        if done_at.is_some_and(|done| depth <= done) {
            break;
        }
        // Any entry ends the subtrees of the entries at its depth or deeper.
        while enclosing.last().is_some_and(|&(d, _)| d >= depth) {
            enclosing.pop();
        }
        let tag = abbrev.tag();
        if tag != gimli::DW_TAG_subprogram && tag != gimli::DW_TAG_inlined_subroutine {
            entries.skip_attributes(abbrev.attributes())?;
            continue;
        }
        // A nested subprogram (C's, GCC's) has addresses of its own: it is always read.
        if tag == gimli::DW_TAG_inlined_subroutine
            && enclosing.last().is_some_and(|&(_, holds)| !holds)
        {
            entries.skip_attributes(abbrev.attributes())?;
            enclosing.push((depth, false));
            continue;
        }
        let mut names = Names::default();
        let (mut low, mut high, mut size, mut ranges) = (None, None, None, None);
        let (mut call_file, mut call_line, mut call_column) = (None, None, None);
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            let value = attr.value();
            if names.take(attr.name(), value) {
                continue;
            }
            match attr.name() {
                gimli::DW_AT_low_pc => low = dwarf.attr_address(unit, value)?,
                gimli::DW_AT_high_pc => match value {
                    AttributeValue::Udata(length) => size = Some(length),
                    other => high = dwarf.attr_address(unit, other)?,
                },
                gimli::DW_AT_ranges => ranges = Some(value),
                gimli::DW_AT_call_file => call_file = attr.udata_value(),
                gimli::DW_AT_call_line => call_line = attr.udata_value(),
                gimli::DW_AT_call_column => call_column = attr.udata_value(),
                _ => {}
            }
        }
        holding.clear();
        if let Some(ranges) = ranges {
            if let Some(mut list) = dwarf.attr_ranges(unit, ranges)? {
                while let Some(range) = list.next()? {
                    mark_holding(probes, range.begin, range.end, &mut holding);
                }
            }
        } else if let Some(low) = low {
            if let Some(end) = size.map(|size| low.wrapping_add(size)).or(high) {
                mark_holding(probes, low, end, &mut holding);
            }
        }
        enclosing.push((depth, !holding.is_empty()));
        for &at in &holding {
            let chain = &mut chains[at];
            // Entries are met parents first: one at the same depth or shallower ends the
            // previous entry's subtree.
            while chain.last().is_some_and(|f| f.depth >= depth) {
                chain.pop();
            }
            chain.push(Function {
                depth,
                names,
                call: call_file.map(|file| CallSite {
                    file,
                    line: call_line
                        .and_then(|l| u32::try_from(l).ok())
                        .filter(|&l| l > 0),
                    column: call_column
                        .and_then(|c| u32::try_from(c).ok())
                        .filter(|&c| c > 0),
                }),
            });
        }
        if !holding.is_empty() && chains.iter().all(|chain| !chain.is_empty()) {
            done_at = chains
                .iter()
                .filter_map(|chain| chain.first())
                .map(|f| f.depth)
                .min();
        }
    }
    Ok(chains)
}

/// Adds the probes (sorted by address) within `begin..end` to `holding`.
fn mark_holding(probes: &[Probe], begin: u64, end: u64, holding: &mut Vec<usize>) {
    let first = probes.partition_point(|probe| probe.svma < begin);
    for (at, probe) in probes.iter().enumerate().skip(first) {
        if probe.svma >= end {
            break;
        }
        if !holding.contains(&at) {
            holding.push(at);
        }
    }
}

#[derive(Clone)]
struct Location {
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
}

/// The line of each probe, from one pass over the unit's line program.
struct Lines<'a> {
    at: Vec<Option<Location>>,
    header: Option<gimli::LineProgramHeader<Slice<'a>>>,
}

impl<'a> Lines<'a> {
    fn of(dwarf: &Dwarf<'a>, unit: &Unit<'a>, probes: &[Probe]) -> Result<Self, gimli::Error> {
        let mut at: Vec<Option<Location>> = probes.iter().map(|_| None).collect();
        let Some(program) = unit.line_program.clone() else {
            return Ok(Lines { at, header: None });
        };
        let mut rows = program.rows();
        // The row in force: it covers the addresses from its own up to the next row's.
        let mut current: Option<(u64, u64, Option<u32>, Option<u32>)> = None;
        let mut names: BTreeMap<u64, Option<String>> = BTreeMap::new();
        // Sequences do not overlap, so a probe's row, once found, is its row: the pass ends
        // when every probe has one.
        let mut unplaced = probes.len();
        while let Some((header, row)) = rows.next_row()? {
            if unplaced == 0 {
                break;
            }
            if let Some((begin, file, line, column)) = current {
                let end = row.address();
                let first = probes.partition_point(|probe| probe.svma < begin);
                for (index, probe) in probes.iter().enumerate().skip(first) {
                    if probe.svma >= end {
                        break;
                    }
                    let name = names
                        .entry(file)
                        .or_insert_with(|| file_name(dwarf, unit, header, file))
                        .clone();
                    if at[index].is_none() {
                        unplaced -= 1;
                    }
                    at[index] = Some(Location {
                        file: name,
                        line,
                        column,
                    });
                }
            }
            current = (!row.end_sequence()).then(|| {
                let line = row.line().and_then(|line| u32::try_from(line.get()).ok());
                let column = match row.column() {
                    gimli::ColumnType::LeftEdge => None,
                    gimli::ColumnType::Column(column) => u32::try_from(column.get()).ok(),
                };
                (row.address(), row.file_index(), line, column)
            });
        }
        let header = Some(rows.header().clone());
        Ok(Lines { at, header })
    }

    /// The path of file `index` of the unit's line program (for inlined call sites).
    fn file(&self, dwarf: &Dwarf<'a>, unit: &Unit<'a>, index: u64) -> Option<String> {
        file_name(dwarf, unit, self.header.as_ref()?, index)
    }
}

/// A line program's file as its full path: the unit's directory, the file's directory and
/// its name, each replacing what came before when absolute.
fn file_name<'a>(
    dwarf: &Dwarf<'a>,
    unit: &Unit<'a>,
    header: &gimli::LineProgramHeader<Slice<'a>>,
    index: u64,
) -> Option<String> {
    let file = header.file(index)?;
    let mut path = match unit.comp_dir {
        Some(dir) => text(dir)?,
        None => String::new(),
    };
    // Directory 0 is the unit's own directory.
    if file.directory_index() != 0 {
        if let Some(directory) = file.directory(header) {
            push_path(&mut path, &text(dwarf.attr_string(unit, directory).ok()?)?);
        }
    }
    push_path(
        &mut path,
        &text(dwarf.attr_string(unit, file.path_name()).ok()?)?,
    );
    Some(path)
}

fn text(slice: Slice<'_>) -> Option<String> {
    Reader::to_string_lossy(&slice)
        .ok()
        .map(std::borrow::Cow::into_owned)
}

fn push_path(path: &mut String, part: &str) {
    let absolute = part.starts_with('/') || part.starts_with('\\') || part.get(1..3) == Some(":\\");
    if absolute {
        part.clone_into(path);
        return;
    }
    let separator = if path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        '\\'
    } else {
        '/'
    };
    if !path.is_empty() && !path.ends_with(separator) {
        path.push(separator);
    }
    path.push_str(part);
}

/// Demangles a Rust symbol, without its hash; other names are kept as they are.
pub(super) fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_owned(),
    }
}

/// The DWARF sections of the executable, borrowed from its mapping.
fn load_dwarf<'a>(object: &object::File<'a>) -> Result<Dwarf<'a>, Unsupported> {
    let endian = if object.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    if object.section_by_name(".debug_info").is_none() {
        // Stripped, or split into a separate file that the `backtrace` crate knows to find.
        return Err(Unsupported("no debug info in the executable"));
    }
    Dwarf::load(|id| -> Result<Slice<'a>, Unsupported> {
        let data = match object.section_by_name(id.name()) {
            Some(section) => {
                let range = section.compressed_file_range()?;
                if range.format != object::CompressionFormat::None {
                    return Err(Unsupported("compressed debug info"));
                }
                section.data()?
            }
            None => &[],
        };
        Ok(EndianSlice::new(data, endian))
    })
}

/// Which unit holds which addresses: from `.debug_aranges`, or for a unit it leaves out, from
/// the unit's own ranges. Also every unit's offset.
fn index_units(
    dwarf: &Dwarf<'_>,
    map: &Mapping,
) -> Result<(Vec<UnitRange>, Vec<DebugInfoOffset<usize>>), Unsupported> {
    let mut ranges = Vec::new();
    let mut headers = dwarf.debug_aranges.headers();
    while let Some(header) = headers.next()? {
        let unit = header.debug_info_offset();
        let mut entries = header.entries();
        while let Some(entry) = entries.next()? {
            let range = entry.range();
            if range.begin < range.end {
                ranges.push(UnitRange {
                    begin: range.begin,
                    end: range.end,
                    unit,
                });
            }
        }
    }
    let mut covered: Vec<DebugInfoOffset<usize>> = ranges.iter().map(|r| r.unit).collect();
    covered.sort_unstable_by_key(|offset| offset.0);
    covered.dedup();
    let mut units = Vec::new();
    let mut headers = dwarf.units();
    while let Some(header) = headers.next()? {
        let Some(offset) = header.debug_info_offset() else {
            continue;
        };
        units.push(offset);
        // Units are often smaller than a page, so visiting each header would keep all of
        // `.debug_info` resident: drop what was read every so often.
        if units.len() % UNITS_PER_RELEASE == 0 {
            map.release();
        }
        if covered.binary_search_by_key(&offset.0, |o| o.0).is_ok() {
            continue;
        }
        let unit = dwarf.unit(header)?;
        let mut unit_ranges = dwarf.unit_ranges(&unit)?;
        while let Some(range) = unit_ranges.next()? {
            if range.begin < range.end {
                ranges.push(UnitRange {
                    begin: range.begin,
                    end: range.end,
                    unit: offset,
                });
            }
        }
    }
    if ranges.is_empty() {
        return Err(Unsupported("no address ranges in the debug info"));
    }
    ranges.sort_unstable_by_key(|range| range.begin);
    ranges.shrink_to_fit();
    Ok((ranges, units))
}

/// Names from the symbol table for addresses no debug entry covers (code without debug info:
/// the C runtime's start, assembly).
fn symbol_table_names(
    object: &object::File<'_>,
    addresses: &[(usize, u64)],
) -> Vec<(usize, String)> {
    let mut best: Vec<Option<(u64, &str)>> = vec![None; addresses.len()];
    for symbol in object.symbols() {
        if symbol.kind() != object::SymbolKind::Text {
            continue;
        }
        let (start, size) = (symbol.address(), symbol.size());
        for (at, &(_, address)) in addresses.iter().enumerate() {
            let inside = start <= address && (address < start.saturating_add(size) || size == 0);
            if inside && best[at].is_none_or(|(found, _)| found < start) {
                if let Ok(name) = symbol.name() {
                    best[at] = Some((start, name));
                }
            }
        }
    }
    addresses
        .iter()
        .zip(best)
        .filter_map(|(&(index, _), found)| Some((index, demangle(found?.1))))
        .collect()
}

/// The executable's load bias and the memory its loadable segments occupy.
fn loaded_segments() -> Option<(usize, Vec<(usize, usize)>)> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `info` for the duration of the call, and `data` is
        // the `Option` below, borrowed mutably by nobody else meanwhile.
        let (info, out) = unsafe {
            (
                &*info,
                &mut *data.cast::<Option<(usize, Vec<(usize, usize)>)>>(),
            )
        };
        let bias = info.dlpi_addr as usize;
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let segments = headers
            .iter()
            .filter(|header| header.p_type == libc::PT_LOAD)
            .map(|header| {
                let begin = bias.wrapping_add(header.p_vaddr as usize);
                (begin, begin.wrapping_add(header.p_memsz as usize))
            })
            .collect();
        *out = Some((bias, segments));
        // The main program comes first: stop there.
        1
    }
    let mut found: Option<(usize, Vec<(usize, usize)>)> = None;
    // SAFETY: `first` matches the callback's signature and only writes `found`.
    unsafe {
        libc::dl_iterate_phdr(Some(first), (&raw mut found).cast());
    }
    found
}

/// The name of the symbol holding `ip` in a shared library, from the dynamic loader.
pub(super) fn shared_library_name(ip: usize) -> Option<String> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(ip as *const c_void, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: `dladdr` succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_sname.is_null() {
        return None;
    }
    // SAFETY: a non-null `dli_sname` is a NUL-terminated string owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) };
    Some(demangle(&name.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_here() -> Vec<usize> {
        let mut ips = Vec::new();
        backtrace::trace(|frame| {
            if let Some(ip) = (frame.ip() as usize).checked_sub(1) {
                ips.push(ip);
            }
            true
        });
        ips
    }

    #[inline(never)]
    fn nested<T: std::fmt::Debug>(depth: u32, value: T) -> Vec<usize> {
        if depth == 0 {
            return walk_here();
        }
        let closure = |v: T| nested(depth - 1, v);
        closure(value)
    }

    #[test]
    fn every_frame_reads_as_addr2line_reads_it() {
        let image = Image::open().expect("the test binary carries DWARF");
        let mut stacks = vec![walk_here(), nested(3, "text"), nested(5, 7u8)];
        stacks.push(
            std::thread::spawn(|| nested(2, vec![1]))
                .join()
                .expect("the thread walks"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        stacks.push(runtime.block_on(async { nested(1, ()) }));
        let mut compared = 0;
        for stack in stacks {
            let own: Vec<usize> = stack
                .iter()
                .copied()
                .filter(|&ip| image.contains(ip))
                .collect();
            assert!(own.len() > 3, "most frames are the executable's");
            let resolved = image.resolve(&own);
            for (address, symbols) in own.iter().zip(resolved) {
                let expected = super::super::symbols::by_backtrace(*address);
                if expected.iter().all(|s| s.filename.is_none()) {
                    // No debug info: addr2line names it from the symbol table, as we do.
                    assert_eq!(
                        symbols.iter().map(|s| &s.name).collect::<Vec<_>>(),
                        expected.iter().map(|s| &s.name).collect::<Vec<_>>(),
                        "{address:#x}"
                    );
                    continue;
                }
                assert_eq!(
                    symbols,
                    expected,
                    "{address:#x} svma {:#x}",
                    address.wrapping_sub(image.bias)
                );
                compared += 1;
            }
        }
        assert!(compared > 30, "compared {compared} addresses");
    }

    #[test]
    fn shared_libraries_are_named_by_the_loader() {
        let image = Image::open().expect("the test binary carries DWARF");
        let getpid = libc::getpid as *const () as usize;
        assert!(!image.contains(getpid), "libc is a shared library");
        let name = shared_library_name(getpid + 1).expect("an exported function");
        assert!(name.contains("getpid"), "{name}");
    }
}
