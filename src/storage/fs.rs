//! The real file system.

use super::anchored::AnchoredDir;
use super::{OpenMode, Storage, StorageFile};
use memmap2::{MmapMut, MmapOptions};
use std::any::Any;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An appended file grows by a window of at least this many bytes at a time ...
const MIN_WINDOW: u64 = 64 * 1024;
/// ... doubling with the file up to this many.
const MAX_WINDOW: u64 = 1 << 20;
/// Appends at least this large (batches) go through `pwrite`: the syscall is amortized,
/// and the kernel fills fresh page-cache pages for less than faulting them in through a
/// mapping (W1 at `Buffered`, 64 KiB batches: 4.6-6.8 M puts/s with `pwrite` above
/// 8 KiB against 3.7-5.4 M/s through the mapping, same session; single 4 KiB items stay
/// faster through the mapping).
const BIG_APPEND: usize = 16 * 1024;

/// How long `try_lock` retries a lock that looks held (see there).
const LOCK_PATIENCE: Duration = Duration::from_millis(100);

/// `std::fs`: what every queue uses unless a test says otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        lock_file(f)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match File::open(path) {
            Ok(f) => read_to_end(f).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut o = OpenOptions::new();
        // Appending files are opened read-write, not O_APPEND: they are written through a
        // shared mapping and `pwrite` at the logical end (see `Tail`).
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::Append => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::Truncate => o.write(true).create(true).truncate(true),
        };
        wrap_file(o.open(path)?, mode)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn boot_id(&self) -> u128 {
        boot_id()
    }

    fn reserve_space(&self, path: &Path, len: u64) -> io::Result<()> {
        if fs::metadata(path).is_ok_and(|m| m.len() >= len) {
            return Ok(());
        }
        fill(&File::create(path)?, len)
    }

    fn anchor(self: Arc<Self>, dir: &Path) -> io::Result<Arc<dyn Storage>> {
        Ok(Arc::new(AnchoredDir::open(dir)?))
    }
}

/// Writes `len` zero bytes into the empty file `file` (see [`Storage::reserve_space`]).
pub(super) fn fill(file: &File, len: u64) -> io::Result<()> {
    grow(file, 0, len)
}

/// Takes the flock on an open lock file (see [`Storage::try_lock`]).
pub(super) fn lock_file(f: File) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
    // flock(2): held per open file description, so a second open in this process
    // conflicts just as another process does. A process being spawned holds a copy of
    // every descriptor between fork and exec (where O_CLOEXEC closes it), so a lock
    // just released can look held for a moment: retry for about 100 ms before
    // reporting it locked.
    let mut pause = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(Some(Box::new(f))),
            Err(TryLockError::WouldBlock) if waited < LOCK_PATIENCE => {
                std::thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The whole contents of a small open file.
pub(super) fn read_to_end(file: File) -> io::Result<Vec<u8>> {
    // Not `fs::read`, which asks for the size first: the file is small, so reading
    // until the end costs one syscall fewer.
    let mut buf = Vec::with_capacity(4096);
    io::Read::read_to_end(&mut io::Read::take(&file, u64::MAX), &mut buf)?;
    Ok(buf)
}

/// A file opened with `mode`, as a [`StorageFile`]: appending ones keep a [`Tail`].
pub(super) fn wrap_file(file: File, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
    let tail = match mode {
        OpenMode::Append | OpenMode::CreateNew => {
            let len = file.metadata()?.len();
            Some(Tail {
                len,
                size: len,
                map: None,
                map_at: 0,
                appended: false,
                synced: false,
                retry_at: 0,
            })
        }
        OpenMode::Read | OpenMode::Truncate => None,
    };
    Ok(Box::new(FsFile { file, tail }))
}

/// Linux's `/proc/sys/kernel/random/boot_id`, read once per process (it cannot change
/// while the process lives); 0 (unknown) elsewhere or when it cannot be read.
pub(super) fn boot_id() -> u128 {
    static BOOT_ID: OnceLock<u128> = OnceLock::new();
    *BOOT_ID.get_or_init(|| {
        #[cfg(target_os = "linux")]
        if let Ok(text) = fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            return parse_boot_id(&text).unwrap_or(0);
        }
        0
    })
}

/// The 32 hex digits of a UUID such as `dc6a2909-6215-4ef2-af25-45b53743d71e` (dashes
/// and surrounding white space ignored) as a number; `None` if it is not one.
fn parse_boot_id(text: &str) -> Option<u128> {
    let mut id = 0u128;
    let mut digits = 0;
    for c in text.trim().chars().filter(|&c| c != '-') {
        id = (id << 4) | u128::from(c.to_digit(16)?);
        digits += 1;
    }
    (digits == 32).then_some(id)
}

/// An open file. Appending files (`Append`, `CreateNew`) keep a [`Tail`].
#[derive(Debug)]
struct FsFile {
    file: File,
    tail: Option<Tail>,
}

/// Appends without a syscall: the file is grown ahead of the data (zero bytes, written
/// so that the blocks are reserved: a full disk is an error of that write and not a
/// `SIGBUS` later) and the grown part is mapped shared; an append copies into the
/// mapping. That puts the bytes in the kernel's page cache, the same place `write(2)`
/// puts them, so they survive the death of the process, and `fdatasync` writes them to
/// disk as it would written ones. Until the file is trimmed (`set_len`, drop) it ends in
/// zero bytes, which readers take for the end of the records (FORMAT.md §Preallocation).
///
/// A handle that is synced stops mapping: when every append is followed by `fdatasync`,
/// the syscall an append saves is nothing next to it. It appends with `pwrite` into a
/// reserve of zeros written after the data: an append then overwrites blocks that are
/// already allocated, within the file's size, and `fdatasync` writes its data and no
/// metadata (72-byte records here: append + `fdatasync` 118-126 µs, overwrite within the
/// size + `fdatasync` 82-84 µs). Only the sync after a reserve is made writes the zeros
/// and the new size and allocation. A hole (`ftruncate`) would write no zeros, but then
/// each first write into a block of it allocates the block, which that put's
/// `fdatasync` must commit: once per 56 records of 72 bytes alone, once per 7 syncs
/// when 8 callers share each sync, slowing those syncs by a fifth. A full disk leaves
/// the reserve short, and the append that needs a new block then reports it.
#[derive(Debug)]
struct Tail {
    /// Where the next append goes: the end of the data.
    len: u64,
    /// The file's size on disk, `>= len`; the bytes between are zero.
    size: u64,
    /// The window `map_at..map_at + map.len()` of the file, mapped shared and writable.
    map: Option<MmapMut>,
    map_at: u64,
    /// Whether this handle appended before.
    appended: bool,
    /// Whether this handle was synced: it then appends with `pwrite` only.
    synced: bool,
    /// After a window could not be had, none is tried before the data reaches this
    /// ([`FsFile::no_window`]).
    retry_at: u64,
}

impl FsFile {
    fn append_to_tail(file: &File, t: &mut Tail, buf: &[u8]) -> io::Result<()> {
        let end = t.len + buf.len() as u64;
        if let Some(map) = &mut t.map
            && end <= t.map_at + map.len() as u64
        {
            if buf.len() >= BIG_APPEND {
                // Into the window's pages, but by `pwrite` (see BIG_APPEND); the rest of
                // the window stays mapped for the next small append.
                file.write_all_at(buf, t.len)?;
            } else {
                let at = (t.len - t.map_at) as usize;
                copy_ascending(&mut map[at..at + buf.len()], buf);
            }
            t.len = end;
            return Ok(());
        }
        // Outside the window: write these bytes with `pwrite`, then grow the file and map a
        // window after them. The zero bytes thus always follow data that a completed
        // write put there, as with plain appends (a file created by `CreateNew` gets its
        // header written before it grows).
        t.map = None;
        file.write_all_at(buf, t.len)?;
        let grew = end > t.size;
        t.len = end;
        t.size = t.size.max(end);
        // A handle's first append reserves nothing: files written once (a new `info`,
        // a chunk header) stay exact.
        let first = !std::mem::replace(&mut t.appended, true);
        if first || buf.len() >= BIG_APPEND {
            return Ok(());
        }
        if t.len < t.retry_at {
            return Ok(());
        }
        if t.synced {
            if !grew {
                return Ok(());
            }
            // Zeros written, not a hole: later appends overwrite blocks already allocated
            // within the file's size, which `fdatasync` syncs without a metadata write
            // (see `Tail`). Best effort, as below.
            let want = t.len + window(t.len);
            match grow(file, t.size, want) {
                Ok(()) => t.size = want,
                Err(_) => Self::no_window(file, t),
            }
            return Ok(());
        }
        // The bytes are written: from here on a failure only means no window, and the
        // next append writes with `pwrite` again (and reports a full disk itself).
        if Self::reserve(file, t).is_err() {
            Self::no_window(file, t);
        }
        Ok(())
    }

    /// A window that could not be had (a full disk, most likely): the zeros grown for
    /// it are cut off again, or they would take the room that draining a full disk
    /// needs (the queue's `reserve`, given up for its acknowledgements and `info`), and
    /// no window is tried again for a window's length of appends. Zeros cut off are
    /// only space: what follows the data is zeros or nothing either way.
    fn no_window(file: &File, t: &mut Tail) {
        t.map = None;
        t.size = match file.set_len(t.len) {
            Ok(()) => t.len,
            Err(_) => file.metadata().map_or(t.size, |m| m.len()).max(t.len),
        };
        t.retry_at = t.len + window(t.len);
    }

    /// Grows the file by a window after the data and maps the window.
    #[allow(unsafe_code)]
    fn reserve(file: &File, t: &mut Tail) -> io::Result<()> {
        let window = window(t.len);
        let want = t.len + window;
        if t.size < want {
            grow(file, t.size, want)?;
            t.size = want;
        }
        // SAFETY: `MmapMut` hands out `&mut [u8]` into the file's pages, which is sound as
        // long as nothing else writes those pages while a slice of them is alive, and
        // nothing shrinks the file while mapped. In this process, the mapped range
        // `t.len..want` is written only through this map (each slice lives for one copy in
        // `append_to_tail`) or by this handle's `pwrite` when no slice exists; other
        // handles of the queue only read (`read_at` copies out, no references to the
        // mapping escape), and `set_len` and `drop` unmap before they shrink the file. Other processes are kept out of the directory by the queue's lock
        // (`.lock`, FORMAT.md §Assumptions); one that ignores it and truncates the file
        // gets this process killed by `SIGBUS`, not memory unsafety.
        let map = unsafe {
            MmapOptions::new()
                .offset(t.len)
                .len(window as usize)
                .map_mut(file)?
        };
        prefault(&map)?;
        t.map_at = t.len;
        t.map = Some(map);
        Ok(())
    }
}

/// How far ahead of `len` bytes of data a file is grown: half the data, within bounds.
fn window(len: u64) -> u64 {
    (len / 2).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// Copies `src` into the mapping sixteen bytes at a time, in ascending order. `memcpy`
/// may store a buffer's parts in any order (glibc writes the first bytes of a large
/// copy last); a process killed mid-copy would then leave zeros before complete
/// frames, which recovery must take for damage. Copied in order, what a kill leaves is
/// always a prefix, as with `write(2)`: whole frames, then at most one cut frame. Each
/// store (16 bytes on x86-64 and aarch64, else a machine word; then a word; then single
/// bytes) is one instruction, which a kill cannot split, and the fences keep the
/// compiler from merging the loops back into a `memcpy` or reordering the stores.
/// Sixteen bytes at a time instead of eight: 4 KiB puts 1.09x, 64-byte puts 1.03x
/// (medians of the ratios of 22 and 14 pairs of runs, the two binaries alternated).
fn copy_ascending(dst: &mut [u8], src: &[u8]) {
    use std::sync::atomic::{Ordering, compiler_fence};
    fn copy_in<const N: usize>(dst: &mut [u8], src: &[u8]) -> usize {
        let mut done = 0;
        for (d, s) in dst.chunks_exact_mut(N).zip(src.chunks_exact(N)) {
            d.copy_from_slice(s);
            compiler_fence(Ordering::Release);
            done += N;
        }
        done
    }
    // 16-byte copies are one store (`movups`, `str q`) on these targets only; elsewhere
    // the compiler may split one into two stores in either order, so the steps are a
    // machine word there.
    const WORD: usize = std::mem::size_of::<usize>();
    const STEP: usize = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        16
    } else {
        WORD
    };
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let mut at = copy_in::<STEP>(dst, src);
    at += copy_in::<WORD>(&mut dst[at..], &src[at..]);
    copy_in::<1>(&mut dst[at..], &src[at..]);
}

/// Makes the file `want` bytes long by writing zero bytes: the file system reserves the
/// blocks now (a full disk is this write's error, not a `SIGBUS` during a later copy
/// into the mapping), and the pages land in the page cache without a page fault each,
/// which `fallocate` plus faulting them in costs (about 1.5x slower for 64-byte items
/// here).
///
/// The zeros go in writes of up to 512 KiB: fewer, larger writes let the kernel fill
/// the page cache in larger folios. Measured here against 64 KiB writes, the two
/// alternated round by round in one process (11-15 rounds, paired medians): 4 KiB puts
/// 1.26-1.46x, 64-byte puts 1.12x. 1 MiB writes were slower for 4 KiB puts (0.88x):
/// faulting a window in costs more per page the larger its folios.
fn grow(file: &File, size: u64, want: u64) -> io::Result<()> {
    // Allocated zeroed, not a `static`: a static array of zeros is read-only data, which
    // would add its 512 KiB to every binary and to the RSS of every process that grows a
    // file. The allocator takes these pages straight from the kernel, and reading them
    // maps the one shared zero page.
    static ZEROS: OnceLock<Box<[u8]>> = OnceLock::new();
    let zeros = ZEROS.get_or_init(|| vec![0; 512 * 1024].into_boxed_slice());
    let mut at = size;
    while at < want {
        let n = (want - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Faults the window's pages in writable now, so that an I/O error reading the page the
/// data ends in is an error here and not a `SIGBUS` during a copy.
#[cfg(target_os = "linux")]
fn prefault(map: &MmapMut) -> io::Result<()> {
    match map.advise(memmap2::Advice::PopulateWrite) {
        // Kernels before 5.14 do not know the advice (EINVAL): pages then fault in on
        // first write.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        r => r,
    }
}

#[cfg(not(target_os = "linux"))]
fn prefault(_: &MmapMut) -> io::Result<()> {
    Ok(())
}

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.tail {
            Some(t) => FsFile::append_to_tail(&self.file, t, buf),
            None => self.file.write_all(buf),
        }
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if let Some(t) = &mut self.tail {
            t.map = None; // unmapped before the file shrinks under it
            self.file.set_len(len)?;
            t.len = len;
            t.size = len;
            // A window that failed before does not hold back one after this (the journal
            // is emptied at every checkpoint, which frees room).
            t.retry_at = 0;
            Ok(())
        } else {
            self.file.set_len(len)
        }
    }
    fn size(&self) -> io::Result<u64> {
        match &self.tail {
            Some(t) => Ok(t.len),
            None => Ok(self.file.metadata()?.len()),
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if let Some(t) = &mut self.tail
            && !t.synced
        {
            // From now on appends use `pwrite` (see `Tail`); the reserve goes, so that
            // this sync does not write its zeros.
            t.synced = true;
            if t.size > t.len {
                #[cfg(not(target_os = "linux"))]
                if let Some(m) = &t.map {
                    m.flush()?;
                }
                t.map = None;
                self.file.set_len(t.len)?;
                t.size = t.len;
            }
        }
        // Linux's page cache is one: `fdatasync` also writes pages dirtied through a
        // mapping (and no mapping is left here elsewhere).
        self.file.sync_data()
    }
}

impl Drop for FsFile {
    /// Trims the zero bytes after the data, so a queue closed cleanly leaves files that
    /// end at their last record. Best effort: recovery treats them as the end anyway.
    fn drop(&mut self) {
        if let Some(t) = &mut self.tail
            && t.size > t.len
        {
            t.map = None;
            let _ = self.file.set_len(t.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ascending_copies_every_length() {
        let src: Vec<u8> = (0..100u8)
            .map(|b| b.wrapping_mul(31).wrapping_add(7))
            .collect();
        for len in 0..src.len() {
            let mut dst = vec![0u8; len];
            copy_ascending(&mut dst, &src[..len]);
            assert_eq!(dst, src[..len]);
        }
    }

    #[test]
    fn appends_read_back_across_windows_and_big_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = FsStorage.open(&path, OpenMode::CreateNew).unwrap();
        let mut want = Vec::new();
        for i in 0..400u32 {
            // Mostly small appends, now and then one larger than a window.
            let n = if i % 97 == 0 {
                BIG_APPEND + 3
            } else {
                (i as usize * 37) % 5000
            };
            let buf: Vec<u8> = (0..n).map(|k| (k as u32 ^ i) as u8 | 1).collect();
            f.append(&buf).unwrap();
            want.extend_from_slice(&buf);
            assert_eq!(f.size().unwrap(), want.len() as u64);
        }
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk[..want.len()], want[..]);
        assert!(on_disk[want.len()..].iter().all(|&b| b == 0));
        drop(f);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            want,
            "drop trims the reserve"
        );
    }

    #[test]
    fn boot_id_parses_uuids_only() {
        assert_eq!(
            parse_boot_id("dc6a2909-6215-4ef2-af25-45b53743d71e\n"),
            Some(0xdc6a2909_6215_4ef2_af25_45b53743d71e)
        );
        assert_eq!(
            parse_boot_id("DC6A290962154EF2AF2545B53743D71E"),
            Some(0xdc6a2909_6215_4ef2_af25_45b53743d71e)
        );
        assert_eq!(parse_boot_id(""), None);
        assert_eq!(parse_boot_id("dc6a2909-6215-4ef2-af25-45b53743d71"), None);
        assert_eq!(parse_boot_id("dc6a2909-6215-4ef2-af25-45b53743d71e0"), None);
        assert_eq!(parse_boot_id("xc6a2909-6215-4ef2-af25-45b53743d71e"), None);
    }

    #[test]
    fn boot_id_is_stable_and_known_on_linux() {
        let first = FsStorage.boot_id();
        assert_eq!(FsStorage.boot_id(), first, "stable across calls");
        let source = Path::new("/proc/sys/kernel/random/boot_id");
        if !cfg!(target_os = "linux") || !source.exists() {
            println!("skipped: no {} here", source.display());
            assert_eq!(first, 0, "unknown is 0");
            return;
        }
        assert_ne!(first, 0);
        let text = std::fs::read_to_string(source).unwrap();
        assert_eq!(Some(first), parse_boot_id(&text));
    }
}
