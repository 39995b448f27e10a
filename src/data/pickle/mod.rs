//! A restricted unpickler for the pickled CIFAR batches of torchvision's "python" layout
//! (`cifar-10-batches-py/`, `cifar-100-python/`).
//!
//! Those files are dicts made by Python 2's `cPickle` (protocol 2) whose `data` is a numpy
//! uint8 array, pickled as `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')`,
//! `numpy.dtype('u1', 0, 1)` and the array's `__setstate__` with the raw bytes as a Python 2
//! `str`. Unpickling means calling those globals, so a general unpickler runs whatever
//! callable a file names (`os.system`, `builtins.eval`, ...).
//!
//! Why not a crate: serde-pickle (the maintained Rust pickle crate) never runs code, but it
//! folds every global except a few builtins into one anonymous "other global", so it cannot
//! tell numpy's `_reconstruct` from `os.system` and refuse the latter by name, and it drops
//! the array's dtype. This reader walks the opcode stream itself and knows exactly:
//!
//! * the data opcodes of protocols 2–5: integers, bools, None, floats, Python 2 `str`
//!   (BINSTRING, SHORT_BINSTRING: read as bytes, like Python 3's `encoding="bytes"`), bytes,
//!   unicode, tuples, lists, dicts, MARK, the memo and FRAME;
//! * four globals, matched by name and never imported nor called:
//!   `numpy.core.multiarray._reconstruct` (also `numpy._core.multiarray._reconstruct`, the
//!   name numpy ≥ 2 writes), `numpy.ndarray`, `numpy.dtype`, and `_codecs.encode` with
//!   `latin1` (how Python 3 writes `bytes` at protocol 2);
//! * REDUCE only on those callables and BUILD only on the array or dtype they made.
//!
//! Any other global is refused where it appears (the error names it), and so are the
//! opcodes that create objects of a class (INST, OBJ, NEWOBJ), persistent ids, extension
//! codes and out-of-band buffers. The result is plain data: nothing in a file is executed.
use std::rc::Rc;

mod machine;

/// Deepest nesting of containers accepted (the CIFAR batches nest 3 deep); a deeper pickle
/// is refused rather than risking the stack when the value is dropped.
pub const MAX_DEPTH: u16 = 64;

/// Why a pickle was not read. One line; the caller prefixes the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The data ends inside an opcode or its argument.
    #[error("truncated pickle: the file ends at byte {len}, inside {op} at byte {pos}")]
    Truncated { pos: usize, len: usize, op: String },
    /// The data ends between opcodes, before STOP.
    #[error("truncated pickle: the file ends at byte {len} without the STOP opcode")]
    NoStop { len: usize },
    /// A global that is not one of the four this reader resolves.
    #[error("refused pickle global `{module}.{name}` at byte {pos}: only numpy's array reconstruction, numpy.dtype and _codecs.encode are resolved, nothing was executed")]
    Global {
        pos: usize,
        module: String,
        name: String,
    },
    /// An opcode this reader does not implement or refuses.
    #[error("unsupported pickle opcode {op} at byte {pos}{why}")]
    Opcode { pos: usize, op: String, why: String },
    /// Opcodes in an impossible combination (stack underflow, wrong argument types, ...).
    #[error("malformed pickle at byte {pos}: {what}")]
    Malformed { pos: usize, what: String },
}

/// Bytes of a pickle: a slice of the file, or produced by `_codecs.encode`.
#[derive(Debug, Clone)]
pub enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Rc<[u8]>),
}

impl Bytes<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => b,
        }
    }
}

/// One of the globals this reader resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`.
    Reconstruct,
    /// `numpy.ndarray`.
    Ndarray,
    /// `numpy.dtype`.
    Dtype,
    /// `_codecs.encode`.
    Encode,
}

/// A numpy array: shape, dtype type string (`"u1"` for uint8), order and raw bytes.
#[derive(Debug, Clone)]
pub struct Array<'a> {
    pub shape: Vec<i64>,
    pub dtype: Rc<str>,
    /// Column-major data (numpy's `is_fortran` flag).
    pub fortran: bool,
    pub data: Bytes<'a>,
}

/// A value read from a pickle.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    Str(Rc<str>),
    Bytes(Bytes<'a>),
    Tuple(Rc<[Value<'a>]>),
    List(Vec<Value<'a>>),
    Dict(Vec<(Value<'a>, Value<'a>)>),
    /// A resolved global (the callable itself, not called).
    Global(Global),
    /// A numpy dtype, by its type string.
    Dtype(Rc<str>),
    /// `_reconstruct`'s empty array, before BUILD gives it its state.
    NewArray,
    /// A numpy array.
    Array(Array<'a>),
}

impl<'a> Value<'a> {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "numpy dtype",
            Value::NewArray => "numpy array without state",
            Value::Array(_) => "numpy array",
        }
    }

    /// The value of a dict under the key `key`, written as bytes (Python 2 `str`, how the
    /// official files have it) or as unicode; the last one when a key repeats, as in Python.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        let Value::Dict(items) = self else {
            return None;
        };
        items.iter().rev().find_map(|(k, v)| {
            let hit = match k {
                Value::Bytes(b) => b.as_slice() == key.as_bytes(),
                Value::Str(s) => &**s == key,
                _ => false,
            };
            hit.then_some(v)
        })
    }

    /// The items of a list or tuple.
    pub fn items(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(v) => Some(v),
            Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// Text of a str, or of bytes read as latin-1 (Python 2 `str`).
    fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => Some(b.as_slice().iter().map(|&c| c as char).collect()),
            _ => None,
        }
    }
}

/// Read one pickle from `data` (bytes after its STOP opcode are ignored, as Python does).
pub fn load(data: &[u8]) -> Result<Value<'_>, PickleError> {
    machine::Machine::new(data).run()
}

/// An opcode for messages: its byte, its character when printable, its name when known.
pub fn opcode_name(op: u8) -> String {
    let name = match op {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        b'X' => "BINUNICODE",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        _ => "",
    };
    let ch = if op.is_ascii_graphic() {
        format!(" '{}'", op as char)
    } else {
        String::new()
    };
    if name.is_empty() {
        format!("0x{op:02x}{ch}")
    } else {
        format!("{name} (0x{op:02x}{ch})")
    }
}
