//! A type's fingerprint: size, alignment and a hash of its name, stored with a
//! typed channel or mutex so that a process opening it with another type is told
//! so instead of reading bytes as the wrong thing.

use std::fmt;

/// Size, alignment and name hash of a type (all zero: no type recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint {
    pub size: u32,
    pub align: u32,
    /// FNV-1a over the bytes of [`std::any::type_name`]: stable for a given
    /// type and compiler, which is what processes sharing a type have.
    pub name_hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `T`.
    pub(crate) fn of<T>() -> Fingerprint {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for b in std::any::type_name::<T>().bytes() {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Fingerprint {
            size: u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX),
            align: u32::try_from(std::mem::align_of::<T>()).unwrap_or(u32::MAX),
            name_hash: hash,
        }
    }

    /// Whether a type was recorded.
    pub(crate) fn is_some(&self) -> bool {
        *self != Fingerprint::default()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_some() {
            return f.write_str("no recorded type");
        }
        write!(
            f,
            "a type of {} bytes, alignment {}, name hash {:#018x}",
            self.size, self.align, self.name_hash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_differ_by_name_even_with_the_same_shape() {
        #[allow(dead_code)]
        struct A(u64);
        #[allow(dead_code)]
        struct B(u64);
        assert_eq!(Fingerprint::of::<A>(), Fingerprint::of::<A>());
        assert_ne!(Fingerprint::of::<A>(), Fingerprint::of::<B>());
        assert_eq!(Fingerprint::of::<A>().size, 8);
        assert!(!Fingerprint::default().is_some());
    }
}
