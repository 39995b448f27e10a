//! The opcode machine of [`super::load`]: a stack, MARK positions and the memo, with the
//! opcodes, globals, REDUCE and BUILD that the module documentation lists.
use std::collections::HashMap;
use std::rc::Rc;

use super::{opcode_name, Array, Bytes, Global, PickleError, Value, MAX_DEPTH};

/// A memo entry: a value with its nesting depth, or a mutable container that is not shared
/// (a second reference to it would see its state at memoization time, not the final one).
#[derive(Debug, Clone)]
enum Memo<'a> {
    Value(Value<'a>, u16),
    Mutable(&'static str),
}

pub(super) struct Machine<'a> {
    data: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// Where the current opcode starts.
    op_pos: usize,
    /// Values with their nesting depth.
    stack: Vec<(Value<'a>, u16)>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Memo<'a>>,
}

type Res<T> = Result<T, PickleError>;

impl<'a> Machine<'a> {
    pub(super) fn new(data: &'a [u8]) -> Machine<'a> {
        Machine {
            data,
            pos: 0,
            op_pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    pub(super) fn run(mut self) -> Res<Value<'a>> {
        loop {
            self.op_pos = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(PickleError::NoStop {
                    len: self.data.len(),
                });
            };
            self.pos += 1;
            if op == b'.' {
                let (value, _) = self.pop()?;
                return Ok(value);
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: u8) -> Res<()> {
        match op {
            0x80 => {
                let proto = self.take(1)?[0];
                if proto > 5 {
                    return self.malformed(format!("protocol {proto} is newer than 5"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'N' => self.push(Value::None),
            0x88 | 0x89 => self.push(Value::Bool(op == 0x88)),
            b'J' | b'K' | b'M' | 0x8a | 0x8b => {
                let v = self.int(op)?;
                self.push(Value::Int(v));
            }
            b'T' | b'U' | b'C' | b'B' | 0x8e | 0x96 => {
                let b = self.string(op)?;
                self.push(Value::Bytes(Bytes::Borrowed(b)));
            }
            b'X' | 0x8c | 0x8d => {
                let b = self.string(op)?;
                match std::str::from_utf8(b) {
                    Ok(s) => self.push(Value::Str(Rc::from(s))),
                    Err(e) => return self.malformed(format!("invalid UTF-8 in a str ({e})")),
                }
            }
            _ => self.step_structure(op)?,
        }
        Ok(())
    }

    /// Containers, the memo, globals, REDUCE and BUILD.
    fn step_structure(&mut self, op: u8) -> Res<()> {
        match op {
            b')' | b't' | 0x85..=0x87 => {
                let items = match op {
                    b')' => Vec::new(),
                    b't' => self.pop_mark()?,
                    _ => self.pop_n((op - 0x84) as usize)?,
                };
                self.push_container(|v| Value::Tuple(Rc::from(v)), items)?;
            }
            b']' | b'}' => self.push(match op {
                b']' => Value::List(Vec::new()),
                _ => Value::Dict(Vec::new()),
            }),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::List(Vec::new()));
                self.extend_list(items)?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Value::Dict(Vec::new()));
                self.extend_dict(items)?;
            }
            b'a' | b'e' => {
                let items = match op {
                    b'a' => vec![self.pop()?],
                    _ => self.pop_mark()?,
                };
                self.extend_list(items)?;
            }
            b's' | b'u' => {
                let items = match op {
                    b's' => self.pop_n(2)?,
                    _ => self.pop_mark()?,
                };
                self.extend_dict(items)?;
            }
            b'q' | b'r' | 0x94 => {
                let i = match op {
                    b'q' => self.take(1)?[0] as u32,
                    b'r' => u32::from_le_bytes(self.array()?),
                    _ => self.memo.len() as u32,
                };
                self.put(i)?;
            }
            b'h' | b'j' => {
                let i = match op {
                    b'h' => self.take(1)?[0] as u32,
                    _ => u32::from_le_bytes(self.array()?),
                };
                self.get(i)?;
            }
            b'c' | 0x93 => {
                let global = self.global(op)?;
                self.push(Value::Global(global));
            }
            b'R' | b'b' => {
                let arg = self.pop()?.0;
                let object = self.pop()?.0;
                let result = match op {
                    b'R' => self.reduce(object, arg)?,
                    _ => self.build(object, arg)?,
                };
                self.push(result);
            }
            other => return Err(self.unsupported(other)),
        }
        Ok(())
    }

    // ------------------------------------------------------------ reading bytes

    /// The next `n` bytes, or a truncation error naming the current opcode.
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(PickleError::Truncated {
                pos: self.op_pos,
                len: self.data.len(),
                op: opcode_name(self.data[self.op_pos]),
            });
        };
        let data: &'a [u8] = self.data;
        let out = &data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn len4(&mut self) -> Res<usize> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len8(&mut self) -> Res<usize> {
        let n = u64::from_le_bytes(self.array()?);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A newline-terminated ASCII line (GLOBAL's module and name), at most 256 bytes.
    fn line(&mut self) -> Res<String> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(257).position(|&c| c == b'\n') else {
            if rest.len() <= 256 {
                return Err(PickleError::Truncated {
                    pos: self.op_pos,
                    len: self.data.len(),
                    op: opcode_name(self.data[self.op_pos]),
                });
            }
            return self.malformed("GLOBAL name longer than 256 bytes".into());
        };
        let line = self.take(n + 1)?;
        Ok(String::from_utf8_lossy(&line[..n]).into_owned())
    }

    /// The integer argument of BININT, BININT1, BININT2, LONG1 or LONG4.
    fn int(&mut self, op: u8) -> Res<i64> {
        let n = match op {
            b'J' => return Ok(i32::from_le_bytes(self.array()?) as i64),
            b'K' => return Ok(self.take(1)?[0] as i64),
            b'M' => return Ok(u16::from_le_bytes(self.array()?) as i64),
            0x8a => self.take(1)?[0] as usize,
            _ => self.len4()?,
        };
        if n > 8 {
            return self.malformed(format!("integer of {n} bytes does not fit in 64 bits"));
        }
        let b = self.take(n)?;
        let mut v: i64 = 0;
        for (i, &byte) in b.iter().enumerate() {
            v |= (byte as i64) << (8 * i);
        }
        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
            v -= 1i64 << (8 * n); // two's complement sign of an n-byte integer
        }
        Ok(v)
    }

    /// The argument of a string opcode (its length, then that many bytes).
    fn string(&mut self, op: u8) -> Res<&'a [u8]> {
        let n = match op {
            b'U' | b'C' | 0x8c => self.take(1)?[0] as usize,
            b'T' => {
                let n = i32::from_le_bytes(self.array()?);
                if n < 0 {
                    return self.malformed(format!("negative string length {n}"));
                }
                n as usize
            }
            b'B' | b'X' => self.len4()?,
            _ => self.len8()?,
        };
        self.take(n)
    }

    // ------------------------------------------------------------ the stack

    fn push(&mut self, v: Value<'a>) {
        self.stack.push((v, 0));
    }

    fn push_depth(&mut self, v: Value<'a>, depth: u16) {
        self.stack.push((v, depth));
    }

    fn pop(&mut self) -> Res<(Value<'a>, u16)> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow".into());
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Res<&(Value<'a>, u16)> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(v) if self.stack.len() > floor => Ok(v),
            _ => self.malformed("stack underflow".into()),
        }
    }

    fn pop_n(&mut self, n: usize) -> Res<Vec<(Value<'a>, u16)>> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return self.malformed("stack underflow".into());
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Res<Vec<(Value<'a>, u16)>> {
        let Some(mark) = self.marks.pop() else {
            return self.malformed("no MARK on the stack".into());
        };
        Ok(self.stack.split_off(mark))
    }

    /// Depth of a container holding values of `depths`, refused past [`MAX_DEPTH`].
    fn depth_of(&self, depths: impl Iterator<Item = u16>) -> Res<u16> {
        let d = depths.max().unwrap_or(0) + 1;
        if d > MAX_DEPTH {
            return self.malformed(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        Ok(d)
    }

    fn push_container(
        &mut self,
        make: impl FnOnce(Vec<Value<'a>>) -> Value<'a>,
        items: Vec<(Value<'a>, u16)>,
    ) -> Res<()> {
        let depth = self.depth_of(items.iter().map(|i| i.1))?;
        let value = make(items.into_iter().map(|i| i.0).collect());
        self.push_depth(value, depth);
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<(Value<'a>, u16)>) -> Res<()> {
        let (mut list, depth) = self.pop()?;
        let depth = depth.max(self.depth_of(items.iter().map(|i| i.1))?);
        let Value::List(v) = &mut list else {
            return self.malformed(format!("APPEND to a {}", list.kind()));
        };
        v.extend(items.into_iter().map(|i| i.0));
        self.push_depth(list, depth);
        Ok(())
    }

    fn extend_dict(&mut self, items: Vec<(Value<'a>, u16)>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return self.malformed("SETITEMS with an odd number of items".into());
        }
        let (mut dict, depth) = self.pop()?;
        let depth = depth.max(self.depth_of(items.iter().map(|i| i.1))?);
        let Value::Dict(d) = &mut dict else {
            return self.malformed(format!("SETITEM on a {}", dict.kind()));
        };
        let mut it = items.into_iter().map(|i| i.0);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        self.push_depth(dict, depth);
        Ok(())
    }

    fn put(&mut self, i: u32) -> Res<()> {
        let (value, depth) = self.top()?;
        let entry = match value {
            Value::List(_) => Memo::Mutable("list"),
            Value::Dict(_) => Memo::Mutable("dict"),
            Value::NewArray | Value::Array(_) => Memo::Mutable("numpy array"),
            v => Memo::Value(v.clone(), *depth),
        };
        self.memo.insert(i, entry);
        Ok(())
    }

    fn get(&mut self, i: u32) -> Res<()> {
        match self.memo.get(&i).cloned() {
            Some(Memo::Value(v, d)) => {
                self.push_depth(v, d);
                Ok(())
            }
            Some(Memo::Mutable(kind)) => self.malformed(format!(
                "a second reference to a {kind} (memo {i}) is not supported"
            )),
            None => self.malformed(format!("memo {i} was never stored")),
        }
    }

    // ------------------------------------------------------------ globals, REDUCE, BUILD

    /// The global named by GLOBAL (two lines) or STACK_GLOBAL (two str on the stack), if
    /// it is one of the four this reader resolves.
    fn global(&mut self, op: u8) -> Res<Global> {
        let (module, name) = if op == b'c' {
            (self.line()?, self.line()?)
        } else {
            let name = self.pop()?.0;
            let module = self.pop()?.0;
            let (Value::Str(module), Value::Str(name)) = (module, name) else {
                return self.malformed("STACK_GLOBAL needs two str".into());
            };
            (module.to_string(), name.to_string())
        };
        match (module.as_str(), name.as_str()) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Ok(Global::Reconstruct)
            }
            ("numpy", "ndarray") => Ok(Global::Ndarray),
            ("numpy", "dtype") => Ok(Global::Dtype),
            ("_codecs", "encode") => Ok(Global::Encode),
            // Escaped: the names come from the file and the message must stay one line.
            _ => Err(PickleError::Global {
                pos: self.op_pos,
                module: module.escape_debug().to_string(),
                name: name.escape_debug().to_string(),
            }),
        }
    }

    fn reduce(&self, callable: Value<'a>, args: Value<'a>) -> Res<Value<'a>> {
        let Value::Tuple(args) = args else {
            return self.malformed(format!("REDUCE with {} arguments", args.kind()));
        };
        match (callable, &args[..]) {
            (Value::Global(Global::Reconstruct), [Value::Global(Global::Ndarray), _, _]) => {
                Ok(Value::NewArray)
            }
            (Value::Global(Global::Dtype), [ty, ..]) => match ty.text() {
                Some(t) => Ok(Value::Dtype(Rc::from(t))),
                None => self.malformed(format!("numpy.dtype of a {}", ty.kind())),
            },
            (Value::Global(Global::Encode), [Value::Str(s), Value::Str(enc)])
                if matches!(&**enc, "latin1" | "latin-1") =>
            {
                let bytes: Option<Vec<u8>> =
                    s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                match bytes {
                    Some(b) => Ok(Value::Bytes(Bytes::Owned(Rc::from(b)))),
                    None => self.malformed("_codecs.encode of a non-latin-1 str".into()),
                }
            }
            (Value::Global(g), _) => {
                self.malformed(format!("call of {g:?} with unexpected arguments"))
            }
            (other, _) => self.malformed(format!("REDUCE on a {}", other.kind())),
        }
    }

    fn build(&self, object: Value<'a>, state: Value<'a>) -> Res<Value<'a>> {
        match object {
            // A dtype's state (version, byte order, ...) does not change a uint8 type.
            Value::Dtype(t) => Ok(Value::Dtype(t)),
            Value::NewArray => self.array_state(state),
            other => self.malformed(format!("BUILD on a {}", other.kind())),
        }
    }

    /// numpy's `ndarray.__setstate__`: `(version, shape, dtype, is_fortran, data)`, or the
    /// same without the version.
    fn array_state(&self, state: Value<'a>) -> Res<Value<'a>> {
        let Value::Tuple(items) = state else {
            return self.malformed(format!("array state is a {}", state.kind()));
        };
        let fields = match &items[..] {
            [Value::Int(_), s, t, f, d] | [s, t, f, d] => (s, t, f, d),
            _ => return self.malformed(format!("array state of {} items", items.len())),
        };
        let (shape, dtype, fortran, data) = fields;
        let Some(shape) = shape.items() else {
            return self.malformed(format!("array shape is a {}", shape.kind()));
        };
        let Value::Dtype(dtype) = dtype else {
            return self.malformed(format!("array dtype is a {}", dtype.kind()));
        };
        let shape: Option<Vec<i64>> = shape
            .iter()
            .map(|v| match v {
                Value::Int(n) if *n >= 0 => Some(*n),
                _ => None,
            })
            .collect();
        let fortran = match fortran {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            v => return self.malformed(format!("array order flag is a {}", v.kind())),
        };
        let Value::Bytes(data) = data else {
            return self.malformed(format!("array data is a {}, expected bytes", data.kind()));
        };
        match shape {
            Some(shape) => Ok(Value::Array(Array {
                shape,
                dtype: dtype.clone(),
                fortran,
                data: data.clone(),
            })),
            None => self.malformed("array shape is not a tuple of sizes".into()),
        }
    }

    fn malformed<T>(&self, what: String) -> Res<T> {
        Err(PickleError::Malformed {
            pos: self.op_pos,
            what,
        })
    }

    fn unsupported(&self, op: u8) -> PickleError {
        let why = match op {
            b'i' | b'o' | 0x81 | 0x92 => ": it creates an object of a class",
            b'P' | b'Q' => ": persistent ids",
            0x82..=0x84 => ": extension codes name globals",
            0x97 | 0x98 => ": out-of-band buffers",
            b'S' | b'V' | b'I' | b'L' | b'F' | b'p' | b'g' => {
                ": text opcodes of protocol 0 (the official files are protocol 2)"
            }
            _ => "",
        };
        PickleError::Opcode {
            pos: self.op_pos,
            op: opcode_name(op),
            why: why.to_string(),
        }
    }
}
