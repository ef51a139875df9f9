//! Box framing shared by the file walk and the in-memory parse of `moov` and `moof`.
//!
//! Every length here comes from the file, so nothing is indexed or allocated from it directly:
//! reads go through [`Reader`], which turns a short payload into an error naming the box.

use std::fmt;

/// A box type or codec tag: four bytes, usually printable ASCII.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FourCc(pub(crate) [u8; 4]);

impl FourCc {
    pub(crate) const fn of(code: &[u8; 4]) -> Self {
        Self(*code)
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tags end up in error messages and in `VideoInfo`; a control byte from a damaged
        // file must not reach either.
        for &b in &self.0 {
            let shown = if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            };
            fmt::Write::write_char(f, shown)?;
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{self}'")
    }
}

pub(crate) const FTYP: FourCc = FourCc::of(b"ftyp");
pub(crate) const MOOV: FourCc = FourCc::of(b"moov");
pub(crate) const MOOF: FourCc = FourCc::of(b"moof");
pub(crate) const MDAT: FourCc = FourCc::of(b"mdat");

/// Where a box ends, as its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// Total size in bytes, header included.
    Size(u64),
    /// Size 0: the box runs to the end of whatever contains it (for a top-level box, the file).
    ToEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: FourCc,
    /// 8, or 16 with a 64-bit size.
    pub(crate) header_len: u64,
    pub(crate) extent: Extent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer bytes than the header needs.
    Short,
    /// A size smaller than the header itself; following it would never advance.
    BadSize { kind: FourCc, size: u64 },
}

/// Parses the box header at the start of `buf` (8 bytes, 16 with a 64-bit size).
pub(crate) fn parse_header(buf: &[u8]) -> Result<Header, HeaderError> {
    let size32 = be_u32(buf, 0).ok_or(HeaderError::Short)?;
    let kind = fourcc(buf, 4).ok_or(HeaderError::Short)?;
    let (header_len, extent) = match size32 {
        0 => (8, Extent::ToEnd),
        1 => (16, Extent::Size(be_u64(buf, 8).ok_or(HeaderError::Short)?)),
        n => (8, Extent::Size(u64::from(n))),
    };
    if let Extent::Size(size) = extent {
        if size < header_len {
            return Err(HeaderError::BadSize { kind, size });
        }
    }
    Ok(Header {
        kind,
        header_len,
        extent,
    })
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn fourcc(buf: &[u8], at: usize) -> Option<FourCc> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(FourCc(bytes))
}

/// Sequential big-endian reads from one box's payload.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: FourCc,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: FourCc, buf: &'a [u8]) -> Self {
        Self { buf, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("the {:?} box is too short", self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(drop)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| format!("the {:?} box is too short", self.what))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn fourcc(&mut self) -> Result<FourCc, String> {
        self.array().map(FourCc)
    }

    /// The version byte and 24 flag bits that open every "full box".
    pub(crate) fn version_flags(&mut self) -> Result<(u8, u32), String> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A field that is 32 bits wide in version 0 and 64 bits wide in version 1.
    pub(crate) fn versioned(&mut self, version: u8) -> Result<u64, String> {
        if version == 1 {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }
}

/// The boxes inside `parent`'s payload, in order.
pub(crate) fn children(parent: FourCc, buf: &[u8]) -> Children<'_> {
    Children {
        parent,
        buf,
        done: false,
    }
}

pub(crate) struct Children<'a> {
    parent: FourCc,
    buf: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<(FourCc, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        // Fewer than 8 bytes left is tolerated rather than refused: QuickTime lists such as
        // `udta` may end with a 32-bit zero terminator.
        if self.done || self.buf.len() < 8 {
            return None;
        }
        let parent = self.parent;
        let item = match parse_header(self.buf) {
            Ok(header) => {
                let total = match header.extent {
                    Extent::Size(size) => usize::try_from(size).unwrap_or(usize::MAX),
                    Extent::ToEnd => self.buf.len(),
                };
                let start = usize::try_from(header.header_len).unwrap_or(usize::MAX);
                match (self.buf.get(start..total), self.buf.get(total..)) {
                    (Some(payload), Some(rest)) => {
                        self.buf = rest;
                        return Some(Ok((header.kind, payload)));
                    }
                    _ => Err(format!(
                        "the {:?} box runs past the end of {parent:?}",
                        header.kind
                    )),
                }
            }
            Err(HeaderError::Short) => Err(format!("a box header inside {parent:?} is cut short")),
            Err(HeaderError::BadSize { kind, size }) => Err(format!(
                "the {kind:?} box inside {parent:?} declares an invalid size of {size} bytes"
            )),
        };
        self.done = true;
        Some(item)
    }
}

/// The first child of type `kind`, if any.
pub(crate) fn find(parent: FourCc, buf: &[u8], kind: FourCc) -> Result<Option<&[u8]>, String> {
    for child in children(parent, buf) {
        let (found, payload) = child?;
        if found == kind {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

/// Like [`find`], for a box the file cannot do without.
pub(crate) fn require(parent: FourCc, buf: &[u8], kind: FourCc) -> Result<&[u8], String> {
    find(parent, buf, kind)?.ok_or_else(|| format!("{parent:?} has no {kind:?} box"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_size_form() {
        let small = [0, 0, 0, 24, b'f', b't', b'y', b'p'];
        assert_eq!(
            parse_header(&small),
            Ok(Header {
                kind: FTYP,
                header_len: 8,
                extent: Extent::Size(24)
            })
        );
        let to_end = [0, 0, 0, 0, b'm', b'd', b'a', b't'];
        assert_eq!(parse_header(&to_end).map(|h| h.extent), Ok(Extent::ToEnd));
        let mut large = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        large.extend_from_slice(&(5u64 << 32).to_be_bytes());
        assert_eq!(
            parse_header(&large),
            Ok(Header {
                kind: MDAT,
                header_len: 16,
                extent: Extent::Size(5 << 32)
            })
        );
        assert_eq!(parse_header(&large[..12]), Err(HeaderError::Short));
        assert_eq!(parse_header(&small[..7]), Err(HeaderError::Short));
        let tiny = [0, 0, 0, 7, b'f', b'r', b'e', b'e'];
        assert!(matches!(
            parse_header(&tiny),
            Err(HeaderError::BadSize { size: 7, .. })
        ));
        let mut tiny_large = vec![0, 0, 0, 1, b'f', b'r', b'e', b'e'];
        tiny_large.extend_from_slice(&15u64.to_be_bytes());
        assert!(matches!(
            parse_header(&tiny_large),
            Err(HeaderError::BadSize { size: 15, .. })
        ));
    }

    #[test]
    fn children_stop_at_a_terminator_and_refuse_overruns() {
        let mut buf = vec![0, 0, 0, 9, b'a', b'b', b'c', b'd', 7];
        buf.extend_from_slice(&[0, 0, 0, 0]);
        let kinds: Vec<_> = children(MOOV, &buf).collect();
        assert_eq!(kinds, vec![Ok((FourCc::of(b"abcd"), &[7u8][..]))]);

        let overrun = [0, 0, 0, 20, b'a', b'b', b'c', b'd', 1, 2, 3];
        let items: Vec<_> = children(MOOV, &overrun).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0]
            .as_ref()
            .is_err_and(|e| e.contains("runs past the end")));
    }

    #[test]
    fn reader_reports_the_short_box() {
        let mut reader = Reader::new(FourCc::of(b"tkhd"), &[1, 2, 3]);
        assert_eq!(reader.u16(), Ok(0x0102));
        assert_eq!(reader.u32(), Err("the 'tkhd' box is too short".to_owned()));
        assert_eq!(FourCc([b'a', 0, b'c', 0x7F]).to_string(), "a?c?");
    }
}
