//! The builder's one error type: every variant names the input that failed
//! (file, package, program and its arguments) so a failed build says what to fix.

use std::path::PathBuf;

/// Result alias for the image builder.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop an image build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written or created.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `image/image.toml` is not valid TOML, does not match the schema, or
    /// fails a check.
    #[error("{path}: {source}")]
    Manifest {
        /// The declaration file.
        path: PathBuf,
        /// What is wrong, naming the field and value.
        source: crate::manifest::ManifestError,
    },
    /// An external program could not be started or exited unsuccessfully.
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its arguments, space-separated.
        args: String,
        /// Exit status, or why it did not start.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// A pinned Debian package version cannot be downloaded.
    #[error(
        "package {name}={version} cannot be downloaded: {reason}\n  versions apt can get: {available}\n  \
         update the pin in image/image.toml"
    )]
    PackageUnavailable {
        /// Package name.
        name: String,
        /// The pinned version.
        version: String,
        /// apt-get's error.
        reason: String,
        /// `apt-cache madison` versions, comma-separated (or "none").
        available: String,
    },
    /// A declared file is not in the package it is declared in.
    #[error("{path} is not in package {package} (extracted at {root})")]
    NotInPackage {
        /// Package name.
        package: String,
        /// The path inside the package.
        path: String,
        /// Where the package was extracted.
        root: PathBuf,
    },
    /// A shared library needed by an ELF file is in no declared package.
    #[error("{library} (needed by {needed_by}) is in no declared package; declare the package that ships it in image/image.toml")]
    LibraryNotFound {
        /// The DT_NEEDED soname.
        library: String,
        /// The image path of the file that needs it.
        needed_by: String,
    },
    /// An ELF file could not be parsed.
    #[error("{path}: not a parseable ELF file: {message}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A kernel module is missing from the kernel package.
    #[error("kernel module {name} (needed by {needed_by}) is not in {dir}")]
    ModuleNotFound {
        /// Module name.
        name: String,
        /// Who asked for it: "image.toml" or the depending module.
        needed_by: String,
        /// The kernel's module directory.
        dir: PathBuf,
    },
    /// Kernel modules depend on each other in a cycle.
    #[error("kernel module dependency cycle through {0}")]
    ModuleCycle(String),
    /// Two different things want the same path in an image tree.
    #[error("image path {path} is claimed twice: {first} and {second}")]
    TreeConflict {
        /// The image path.
        path: String,
        /// What claimed it first.
        first: String,
        /// What claimed it again.
        second: String,
    },
    /// A built part does not fit where it must go.
    #[error("{what} is {size} bytes, more than the {limit} bytes it has")]
    TooLarge {
        /// The part, e.g. "root filesystem".
        what: String,
        /// Its size.
        size: u64,
        /// The room it has.
        limit: u64,
    },
    /// A disk image does not have the layout this builder writes.
    #[error("{path}: {message}")]
    Layout {
        /// The disk image.
        path: PathBuf,
        /// What was expected and not found.
        message: String,
    },
    /// A hypervisor format file could not be made reproducible.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and not found.
        message: String,
    },
    /// `out/image.json` could not be parsed.
    #[error("{path}: {source}")]
    ImageInfo {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The OVF descriptor could not be written.
    #[error("writing the OVF descriptor: {0}")]
    Xml(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Attaches an action and a path to `std::io` results.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`Error::Io`].
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}
