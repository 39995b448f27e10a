"""Fixture writer for tests/torchvision_data.rs: dataset files laid out as torchvision keeps
them on disk, written by Python's own pickle and numpy (the official CIFAR "python" archives
are dicts pickled by Python 2's cPickle at protocol 2, with bytes keys and a uint8 numpy
array `data`), plus the values each file holds, as raw bytes, for the Rust side to compare.

Usage:
  python3 torchvision_data.py cifar ROOT cifar10|cifar100 PER_FILE TEST STYLE SEED
      ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (PER_FILE images
      in each training batch, TEST in the test batch) or ROOT/cifar-100-python/{train,test,
      meta} (PER_FILE training images); the expected values go to ROOT/expect/<file>.images
      (N*3072 bytes, numpy's C order) and .labels (N bytes; CIFAR-100: .fine and .coarse).
      STYLE: py2 = as Python 2's cPickle wrote the official files (str as BINSTRING /
      SHORT_BINSTRING, the global numpy.core.multiarray._reconstruct); py3 = Python 3's
      pickle.dump(d, f, protocol=2) (bytes through _codecs.encode, numpy 2's
      numpy._core.multiarray._reconstruct).
  python3 torchvision_data.py evil PATH GLOBAL MARKER CONTROL
      A CIFAR-like pickle whose `data` calls GLOBAL (os.system, posix.system,
      builtins.eval, builtins.eval@4 for protocol 4) to create MARKER. First the same pickle
      aimed at CONTROL is loaded by Python's pickle, which must create CONTROL: the payload
      is real.
  python3 torchvision_data.py bad PATH CASE N
      A batch of N images that must be refused (CASE: shape4d, rows, cols, float, labels,
      nodata, list) or, for CASE fortran, a valid column-major one (expected values next to
      it as PATH.images / PATH.labels).
  python3 torchvision_data.py idx DIR TRAIN TEST SIDE FILES
      The four (Fashion-)MNIST IDX files in DIR as torchvision leaves them in <Name>/raw/
      (FILES: both = .gz and extracted, gz, raw); expected values in DIR/../expect/.
Every file written is read back with pickle.load (encoding="bytes" and, for py2,
encoding="latin1" as torchvision does) and compared before the script exits 0.
"""
import gzip
import io
import os
import pickle
import struct
import sys

import numpy as np


class Py2Pickler(pickle._Pickler):
    """Python 3's pure-Python pickler writing what Python 2's cPickle wrote: every str and
    bytes as a Python 2 str (SHORT_BINSTRING below 256 bytes, else BINSTRING), and numpy's
    globals under their Python 2 era module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if isinstance(obj, str):
            obj = obj.encode("latin1")
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__
        name = name or obj.__qualname__
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dump(obj, path, style):
    with open(path, "wb") as f:
        if style == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=2)


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def verify(path, obj, style):
    with open(path, "rb") as f:
        back = pickle.load(f, encoding="bytes")
    assert same(obj, back), f"{path}: pickle.load(encoding='bytes') differs"
    if style == "py2":
        with open(path, "rb") as f:
            back = pickle.load(f, encoding="latin1")
        text = {k.decode(): v for k, v in obj.items()}
        text = {k: [x.decode() for x in v] if k == "filenames" else v for k, v in text.items()}
        text["batch_label"] = text["batch_label"].decode()
        assert same(text, back), f"{path}: pickle.load(encoding='latin1') differs"


def batch(rng, n, label, extra):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    d = {b"batch_label": label.encode(), b"data": data,
         b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)]}
    for key, classes in extra:
        d[key.encode()] = [int(x) for x in rng.integers(0, classes, size=n)]
    return d


def write_expect(root, name, d, keys):
    out = os.path.join(root, "expect")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".images"), "wb") as f:
        f.write(d[b"data"].tobytes(order="C"))
    for key, suffix in keys:
        with open(os.path.join(out, name + suffix), "wb") as f:
            f.write(bytes(d[key.encode()]))


def cifar(root, dataset, per_file, test, style, seed):
    rng = np.random.default_rng(int(seed))
    per_file, test = int(per_file), int(test)
    if dataset == "cifar10":
        d = os.path.join(root, "cifar-10-batches-py")
        files = [(f"data_batch_{i}", per_file, f"training batch {i} of 5") for i in range(1, 6)]
        files.append(("test_batch", test, "testing batch 1 of 1"))
        extra, keys = [("labels", 10)], [("labels", ".labels")]
        meta = {b"num_cases_per_batch": per_file, b"label_names": [b"airplane"] * 10,
                b"num_vis": 3072}
        meta_name = "batches.meta"
    else:
        d = os.path.join(root, "cifar-100-python")
        files = [("train", per_file, "training batch 1 of 1"), ("test", test, "testing batch 1 of 1")]
        extra = [("fine_labels", 100), ("coarse_labels", 20)]
        keys = [("fine_labels", ".fine"), ("coarse_labels", ".coarse")]
        meta = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fish"] * 20}
        meta_name = "meta"
    os.makedirs(d, exist_ok=True)
    for name, n, label in files:
        obj = batch(rng, n, label, extra)
        path = os.path.join(d, name)
        dump(obj, path, style)
        verify(path, obj, style)
        write_expect(root, name, obj, keys)
    dump(meta, os.path.join(d, meta_name), style)


class Call:
    """An object that pickles as a call of `func(arg)`: what a malicious file carries."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def evil_bytes(glob, marker):
    if glob == "os.system":
        # Hand-written, as an attacker would: pickle itself writes os.system as posix.system.
        cmd = f"touch {marker}".encode()
        return (b"\x80\x02}q\x00(U\x04dataq\x01cos\nsystem\nq\x02U" + bytes([len(cmd)]) + cmd
                + b"q\x03\x85q\x04Rq\x05U\x06labelsq\x06]q\x07u.")
    if glob == "posix.system":
        payload = Call(os.system, f"touch {marker}")
        proto = 2
    else:
        payload = Call(eval, f"open({marker!r}, 'w').close()")
        proto = 4 if glob.endswith("@4") else 2
    return pickle.dumps({b"data": payload, b"labels": [0]}, protocol=proto)


def evil(path, glob, marker, control):
    blob = evil_bytes(glob, control)
    assert not os.path.exists(control)
    pickle.loads(blob)  # Python runs the payload: the control marker appears
    assert os.path.exists(control), f"{glob}: the control payload did not run"
    with open(path, "wb") as f:
        f.write(evil_bytes(glob, marker))


def bad(path, case, n):
    n = int(n)
    rng = np.random.default_rng(7)
    obj = batch(rng, n, "training batch 1 of 5", [("labels", 10)])
    if case == "shape4d":
        obj[b"data"] = obj[b"data"].reshape(n, 3, 32, 32)
    elif case == "rows":
        obj[b"data"] = obj[b"data"][: n - 1].copy()
    elif case == "cols":
        obj[b"data"] = obj[b"data"][:, :3071].copy()
    elif case == "float":
        obj[b"data"] = obj[b"data"].astype(np.float32)
    elif case == "labels":
        obj[b"labels"] = obj[b"labels"][: n - 1]
    elif case == "nodata":
        del obj[b"data"]
    elif case == "list":
        obj = [obj[b"data"], obj[b"labels"]]
    elif case == "fortran":
        obj[b"data"] = np.asfortranarray(obj[b"data"])
        assert not obj[b"data"].flags.c_contiguous
        with open(path + ".images", "wb") as f:
            f.write(obj[b"data"].tobytes(order="C"))
        with open(path + ".labels", "wb") as f:
            f.write(bytes(obj[b"labels"]))
    else:
        raise SystemExit(f"unknown case {case}")
    dump(obj, path, "py3")
    if not isinstance(obj, list):
        verify(path, obj, "py3")


def idx(d, train, test, side, files):
    train, test, side = int(train), int(test), int(side)
    os.makedirs(d, exist_ok=True)
    expect = os.path.join(os.path.dirname(os.path.normpath(d)), "expect")
    os.makedirs(expect, exist_ok=True)
    for prefix, n, offset in [("train", train, 0), ("t10k", test, 3)]:
        i = np.arange(n, dtype=np.int64)[:, None, None]
        y = np.arange(side)[None, :, None]
        x = np.arange(side)[None, None, :]
        images = ((i * 7 + y * 3 + x + offset) % 256).astype(np.uint8)
        labels = ((np.arange(n) * 3 + offset) % 10).astype(np.uint8)
        for base, header, body in [
            (f"{prefix}-images-idx3-ubyte", struct.pack(">IIII", 0x803, n, side, side), images),
            (f"{prefix}-labels-idx1-ubyte", struct.pack(">II", 0x801, n), labels),
        ]:
            content = header + body.tobytes()
            if files in ("both", "raw"):
                with open(os.path.join(d, base), "wb") as f:
                    f.write(content)
            if files in ("both", "gz"):
                with gzip.open(os.path.join(d, base + ".gz"), "wb", compresslevel=1) as f:
                    f.write(content)
        with open(os.path.join(expect, prefix + ".images"), "wb") as f:
            f.write(images.tobytes())
        with open(os.path.join(expect, prefix + ".labels"), "wb") as f:
            f.write(labels.tobytes())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"cifar": cifar, "evil": evil, "bad": bad, "idx": idx}[cmd](*args)
