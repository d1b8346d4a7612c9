//! A queue directory held open: every file is reached through the directory's handle with
//! the `*at` system calls, never by resolving the directory's path again. A queue whose
//! directory is renamed keeps working in it; one whose directory is deleted gets errors
//! (`ENOENT` from a file it creates, `deleted()` from the checks that `sync` and `close`
//! make) instead of writing into whatever directory has that path now, such as a new
//! queue created there.

use super::fs::{boot_id, fill, lock_file, read_to_end, wrap_file};
use super::{OpenMode, Storage, StorageFile};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::any::Any;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Files are created as `std::fs` creates them: read-write for all, less the umask.
const FILE_MODE: u32 = 0o666;
const DIR_MODE: u32 = 0o777;

/// [`FsStorage`](super::FsStorage) anchored to one directory (see the module docs).
/// Paths handed to it must lie under the path it was anchored at, as the queue's are
/// (`dir.join(name)`): the prefix is dropped without looking at the file system, and the
/// rest is resolved from the directory's handle.
#[derive(Debug)]
pub(crate) struct AnchoredDir {
    fd: OwnedFd,
    /// The path the directory had when anchored: only to recognize the queue's paths.
    root: PathBuf,
}

impl AnchoredDir {
    pub(crate) fn open(dir: &Path) -> io::Result<AnchoredDir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(dir, flags, Mode::empty())?;
        Ok(AnchoredDir {
            fd,
            root: dir.to_path_buf(),
        })
    }

    /// `path` relative to the directory: `.` for the directory itself.
    fn rel<'a>(&self, path: &'a Path) -> io::Result<&'a Path> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not inside the queue directory {}",
                    path.display(),
                    self.root.display()
                ),
            )
        })?;
        // `..` would leave the directory the handle holds.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} leaves the queue directory", path.display()),
            ));
        }
        Ok(if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        })
    }

    fn open_at(&self, path: &Path, flags: OFlags) -> io::Result<File> {
        let flags = flags | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, self.rel(path)?, flags, mode(FILE_MODE))?;
        Ok(File::from(fd))
    }
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as _)
}

impl Storage for AnchoredDir {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut at = PathBuf::new();
        for part in self.rel(dir)?.components() {
            at.push(part);
            match rustix::fs::mkdirat(&self.fd, &at, mode(DIR_MODE)) {
                Err(rustix::io::Errno::EXIST) => {}
                r => r?,
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        lock_file(self.open_at(path, OFlags::RDWR | OFlags::CREATE)?)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        // Reads a new descriptor of the directory (`openat(fd, ".")`), so the listing
        // starts at its beginning every time.
        let sub = rustix::fs::openat(
            &self.fd,
            self.rel(dir)?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&sub)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match self.open_at(path, OFlags::RDONLY) {
            Ok(f) => read_to_end(f).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let flags = match mode {
            OpenMode::Read => OFlags::RDONLY,
            // Read-write, not O_APPEND: see `Tail` in fs.rs.
            OpenMode::Append => OFlags::RDWR,
            OpenMode::CreateNew => OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
            OpenMode::Truncate => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        };
        wrap_file(self.open_at(path, flags)?, mode)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.fd,
            self.rel(from)?,
            &self.fd,
            self.rel(to)?,
        )?)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            self.rel(path)?,
            AtFlags::empty(),
        )?)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let rel = self.rel(dir)?;
        if rel == Path::new(".") {
            return Ok(rustix::fs::fsync(&self.fd)?);
        }
        let sub = rustix::fs::openat(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(rustix::fs::fsync(&sub)?)
    }

    fn boot_id(&self) -> u128 {
        boot_id()
    }

    fn reserve_space(&self, path: &Path, len: u64) -> io::Result<()> {
        let rel = self.rel(path)?;
        match rustix::fs::statat(&self.fd, rel, AtFlags::empty()) {
            Ok(st) if st.st_size as u64 >= len => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        fill(
            &self.open_at(path, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?,
            len,
        )
    }

    fn anchor(self: Arc<Self>, dir: &Path) -> io::Result<Arc<dyn Storage>> {
        if dir == self.root {
            return Ok(self);
        }
        // A directory inside this one (the dead letters' queue) is reached through this
        // handle too, so it moves with it.
        if let Ok(rel) = self.rel(dir) {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&self.fd, rel, flags, Mode::empty())?;
            return Ok(Arc::new(AnchoredDir {
                fd,
                root: dir.to_path_buf(),
            }));
        }
        Ok(Arc::new(AnchoredDir::open(dir)?))
    }

    fn available(&self) -> io::Result<Option<u64>> {
        let v = rustix::fs::fstatvfs(&self.fd)?;
        Ok(Some(v.f_bavail.saturating_mul(v.f_frsize)))
    }

    /// A directory with no links left was removed (`rmdir` needs it empty, so its files
    /// were removed first): what the queue writes there is gone once it lets go.
    fn deleted(&self) -> io::Result<bool> {
        Ok(rustix::fs::fstat(&self.fd)?.st_nlink == 0)
    }
}
