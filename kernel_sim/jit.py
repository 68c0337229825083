"""How the engine jits a function: Numba, with an on-disk cache that cannot serve a stale kernel.

Every jitted module of kernel_sim (:mod:`kernel_sim.cpu`, :mod:`kernel_sim.mmu`,
:mod:`kernel_sim.monitors.emulation_kernel`) decorates its functions with :func:`njit` from this
module instead of ``numba.njit``::

    from .jit import njit
    from . import isa, state as S

    @njit
    def port_in(port, ctrl, counters):
        if port == isa.PORT_TIMER:
            return ctrl[S.C_TIMER_PERIOD]
        ...

Two facts about Numba make this module necessary.

**Numba freezes globals.**  When Numba compiles a function, every global name the function
reads -- ``C_PC`` imported from :mod:`kernel_sim.state`, or ``S.C_PC`` read as an attribute of
the module ``S`` -- is looked up *once* and its value is compiled into the machine code as a
constant, exactly as if the number had been typed into the function.  That is why the kernels
are fast (``ctrl[S.C_PC]`` is a load from a fixed offset, not a dictionary lookup) and why they
can take their constants straight from the one place that defines them (``isa.py`` for the
instruction set, ``state.py`` for the state layout) without copying them.

**Numba's on-disk cache only watches one file.**  ``cache=True`` stores the machine code in
``NUMBA_CACHE_DIR`` (or ``__pycache__``) with a *source stamp*: a fingerprint of the file that
defines the function.  A later process reuses the machine code while the stamp matches.  But
the stamp covers only that one file.  Change ``C_TIMER_PERIOD`` in ``state.py`` (or a port
number in ``isa.py``, or a helper in ``mmu.py`` that ``cpu.py`` calls and Numba compiled *into*
``cpu.py``'s machine code) and ``cpu.py``'s stamp is unchanged, so the next process silently
runs the old kernel with the old number frozen into it.  That is why these modules used to keep
private copies of every constant in their own file -- copies that could drift apart.

**The fix: key the cache on everything the kernel depends on.**  :class:`DependencyKeyedLocator`
is a Numba *cache locator* (the object that tells Numba where a function's cache lives and what
its source stamp is).  It claims only the functions defined inside this package, lets Numba
choose the locator it would have used anyway (so ``NUMBA_CACHE_DIR``, ``__pycache__`` and the
user-wide cache keep working; Binder's build-time warm-up stays valid), and replaces the source
stamp by a hash of the *dependency closure*: the function's own file plus every module of this
package it imports at module level (``from .x import y``, ``from . import x``, ``from ..x import
y``, ``import kernel_sim.x``), recursively.  So ``cpu.py`` is stamped with ``cpu.py``,
``jit.py``, ``mmu.py``, ``state.py``, ``isa.py`` and whatever ``isa.py`` itself imports from
the package: change any of their texts and the cached kernel is recompiled; change a plot or
the assembler and it is not.  The closure is found by reading the import statements (the AST),
not by importing anything, so a new dependency counts as soon as its import line is written.

What the stamp does not cover: imports inside functions (Numba cannot compile those anyway) and
modules outside this package (NumPy, Numba itself: Numba keys its cache on its own version).
If you set ``NUMBA_CACHE_LOCATOR_CLASSES``, Numba uses your list and this locator is bypassed.

``tests/test_jit.py`` checks the stamp (it changes with every dependency's text and only then)
and, end to end in fresh processes, that a changed constant reaches the kernel -- and that
without this locator it would not.
"""
from __future__ import annotations

import ast
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numba
from numba.core import caching

#: The directory of this package: functions defined below it are ours to stamp.
PACKAGE_DIR = Path(__file__).resolve().parent


def njit(*args, **kwargs):
    """``numba.njit`` with the on-disk cache on (``cache=True`` unless told otherwise).

    Use it bare (``@njit``) or with options (``@njit(inline="always")``).  The cache it turns on
    is keyed by :func:`source_stamp`, so a kernel is never reused after a constant it froze in
    has changed.
    """
    kwargs.setdefault("cache", True)
    return numba.njit(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# The dependency closure and its stamp
# ---------------------------------------------------------------------------------------------
def _module_file(directory: Path):
    """``directory/x.py`` or ``directory/x/__init__.py`` for the path ``directory/x``."""
    if directory.with_suffix(".py").is_file():
        return directory.with_suffix(".py")
    if (directory / "__init__.py").is_file():
        return directory / "__init__.py"
    return None


def _module_level(statements):
    """The statements that run when the module is imported (not those inside a def or class)."""
    for node in statements:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(node, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef,
                                                                 ast.ClassDef)):
                yield from _module_level(inner)


@lru_cache(maxsize=None)
def _imports(path: Path, mtime_ns: int, size: int, package_dir: Path) -> tuple:
    """Files of the package that ``path`` imports at module level (cached per file version)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    root = package_dir.parent
    package = package_dir.name
    found = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            bases = [root.joinpath(*a.name.split(".")) for a in node.names
                     if a.name.split(".")[0] == package]
            names = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
            elif (node.module or "").split(".")[0] == package:
                base = root
            else:
                continue
            bases = [base.joinpath(*node.module.split(".")) if node.module else base]
            names = [a.name for a in node.names]
        else:
            continue
        for base in bases:
            module = _module_file(base)
            submodules = [_module_file(base / name) for name in names]
            found.update(m for m in submodules if m is not None)
            # ``from .state import C_PC`` needs state.py; ``from . import isa`` needs only isa.py
            if module is not None and (not names or None in submodules):
                found.add(module)
    return tuple(sorted(f.resolve() for f in found))


def _version(path: Path):
    st = path.stat()
    return path, st.st_mtime_ns, st.st_size


def dependencies(py_file, package_dir: Path = PACKAGE_DIR) -> tuple:
    """``py_file`` and every file of the package it imports at module level, recursively.

    ``package_dir`` is the package's directory (this one unless a test says otherwise)."""
    package_dir = Path(package_dir).resolve()
    todo = [Path(py_file).resolve()]
    seen = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(*_version(path), package_dir))
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def _stamp(versions: tuple, package_dir: Path) -> str:
    digest = hashlib.sha256()
    for path, _mtime, _size in versions:
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_stamp(py_file, package_dir: Path = PACKAGE_DIR) -> str:
    """The cache key of every function defined in ``py_file``: a SHA-256 of the texts of its
    dependency closure (:func:`dependencies`), named by their paths inside the package (so a
    copy of the package elsewhere has the same stamp)."""
    package_dir = Path(package_dir).resolve()
    return _stamp(tuple(_version(p) for p in dependencies(py_file, package_dir)), package_dir)


def _ours(py_file) -> bool:
    try:
        path = Path(py_file).resolve()
    except (OSError, TypeError):
        return False
    return path.suffix == ".py" and PACKAGE_DIR in path.parents and path.is_file()


# ---------------------------------------------------------------------------------------------
# The locator
# ---------------------------------------------------------------------------------------------
#: The class holding Numba's list of locator classes (``CacheImpl`` in recent Numba versions,
#: ``_CacheImpl`` in older ones).
_CACHE_IMPL = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")


class DependencyKeyedLocator(caching._CacheLocator):
    """Numba's own choice of cache locator, with :func:`source_stamp` as the source stamp.

    Numba asks each class in ``CacheImpl._locator_classes`` in turn for a locator; this class
    is first in that list.  For a function outside this package it answers None (Numba goes on
    to its own classes, untouched).  For one of ours it asks the classes after it -- exactly the
    choice Numba would have made -- and wraps the answer: same directory, same file names,
    another stamp.
    """

    def __init__(self, inner, py_file):
        self._inner = inner
        self._py_file = py_file

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _ours(py_file):
            return None
        for other in list(_CACHE_IMPL._locator_classes):
            if other is cls:
                continue
            inner = other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, py_file)
        return None

    def ensure_cache_path(self):
        return self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    def get_source_stamp(self):
        return source_stamp(self._py_file)

    def __getattr__(self, name):          # anything else a Numba version asks a locator
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def install() -> None:
    """Put :class:`DependencyKeyedLocator` first in Numba's list (done when this module is
    imported; calling it again does nothing)."""
    if DependencyKeyedLocator not in _CACHE_IMPL._locator_classes:
        _CACHE_IMPL._locator_classes.insert(0, DependencyKeyedLocator)


def uninstall() -> None:
    """Remove the locator: Numba's plain per-file stamp again (to watch a kernel go stale)."""
    while DependencyKeyedLocator in _CACHE_IMPL._locator_classes:
        _CACHE_IMPL._locator_classes.remove(DependencyKeyedLocator)


install()
