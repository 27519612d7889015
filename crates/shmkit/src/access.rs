//! How a mapping may be used: access modes and access-pattern advice.

/// How a mapping may be accessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reads only. The safe API offers no way to write; writes through raw
    /// pointers fault.
    ReadOnly,
    /// Reads and writes, visible to every process that maps the same object.
    #[default]
    ReadWrite,
    /// Reads see the object; writes go to private copies of the touched pages and
    /// are seen by no other process, nor written back.
    CopyOnWrite,
}

impl Access {
    /// Whether writes through this mapping are allowed.
    pub fn is_writable(self) -> bool {
        !matches!(self, Access::ReadOnly)
    }

    /// Whether the object itself must be opened for writing to map it this way.
    pub(crate) fn needs_writable_object(self) -> bool {
        matches!(self, Access::ReadWrite)
    }
}

/// Expected access pattern, passed to the OS as a hint (`madvise` on Unix).
///
/// On Windows the hints are accepted and ignored: Windows has no `madvise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// No special treatment.
    Normal,
    /// Pages will be read in order: read ahead aggressively, drop behind.
    Sequential,
    /// Pages will be read in random order: do not read ahead.
    Random,
    /// Pages will be needed soon: start reading them in now.
    WillNeed,
}
