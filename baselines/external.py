"""Models written outside fusebench: `FILE.py:Class`, `package.module:Class`, and installed
packages' entry points in the group `fusebench.models`.

Such a model is a subclass of `baselines.Recommender` like every built-in one; once loaded it
is registered under its `name` attribute, and `model_source(name)` says which code it is (the
spec as given, the file, the file's SHA-256, the distribution of an entry point). Records carry
that source in their key, so editing the file makes new records instead of resuming old ones.

Every mistake a user can make here (file or module missing, a syntax error, no such class, not
a Recommender, a name that a built-in model already has) is one `FusebenchError` line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import marshal
import re
import sys
import types
from pathlib import Path
from typing import Any

from datasets.errors import FusebenchError

from .base import (
    FAMILIES,
    MODEL_NAME,
    Recommender,
    builtin_model,
    register_discovery,
    register_external,
    register_resolver,
    registered_sources,
)

ENTRY_POINT_GROUP = "fusebench.models"
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CLASS = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")  # Outer.Inner allowed

# canonical spec -> (sha256, class): a spec loaded once is not executed again unless its file changed
_LOADED: dict[str, tuple[str, type[Recommender]]] = {}


def is_spec(name: str) -> bool:
    """Whether `name` names code rather than a registered model: 'FILE.py:Class' or 'pkg.mod:Class'."""
    where, sep, attr = name.rpartition(":")
    if not sep or not _CLASS.match(attr):
        return False
    return where.endswith(".py") or bool(_MODULE.match(where))


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise FusebenchError(f"model file {path}: cannot read it ({exc.strerror or exc})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: Path, sha: str):
    # a unique module name per file content: two versions of one file never share a module
    modname = f"fusebench_external.{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{sha[:12]}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise FusebenchError(f"model file {path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    if "fusebench_external" not in sys.modules:  # the parent package pickle and dataclasses import
        parent = types.ModuleType("fusebench_external")
        parent.__path__ = []
        sys.modules["fusebench_external"] = parent
    sys.modules[modname] = module  # before executing: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[modname]
        raise FusebenchError(f"model file {exc.filename or path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # the user's code failed while importing: one line, their error
        del sys.modules[modname]
        raise FusebenchError(f"model file {path}: importing it failed: {_first_line(exc)}") from None
    return module


def _import_module(where: str):
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise FusebenchError(
                f"model module {where!r} not found (is it installed, or on PYTHONPATH? "
                "a file is given as path/to/file.py:Class)"
            ) from None
        raise FusebenchError(f"model module {where!r}: importing it failed: {_first_line(exc)}") from None
    except SyntaxError as exc:
        raise FusebenchError(f"model module {where!r}: {exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise FusebenchError(f"model module {where!r}: importing it failed: {_first_line(exc)}") from None


def _class_of(module, attr: str, spec: str) -> type[Recommender]:
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            found = sorted(
                n
                for n, v in vars(module).items()
                if isinstance(v, type)
                and issubclass(v, Recommender)
                and v is not Recommender
                and getattr(v, "__module__", None) == module.__name__
            )
            hint = f"; its Recommender classes: {', '.join(found)}" if found else "; it defines no Recommender class"
            raise FusebenchError(f"model {spec}: no class {attr!r} there{hint}")
    if not isinstance(obj, type) or not issubclass(obj, Recommender):
        raise FusebenchError(
            f"model {spec}: {attr} is not a subclass of baselines.Recommender (see README, 'Adding your own model')"
        )
    return obj


def check_identity(cls: type[Recommender], spec: str) -> None:
    """The class's `name` and `family` can be registered: a valid name that no built-in model has."""
    if not isinstance(cls.name, str) or not cls.name:
        raise FusebenchError(f"model {spec}: class {cls.__qualname__} needs a `name` (its registry name)")
    if not MODEL_NAME.match(cls.name):
        raise FusebenchError(
            f"model {spec}: name {cls.name!r} must be up to 64 letters, digits and . _ + - "
            "(it names folders and leaderboard rows)"
        )
    if cls.family not in FAMILIES:
        raise FusebenchError(f"model {spec}: family {cls.family!r} must be one of {', '.join(FAMILIES)}")
    if builtin_model(cls.name):
        raise FusebenchError(f"model {spec}: name {cls.name!r} is a built-in model's; give the class another name")


def source_of(cls: type) -> tuple[str | None, str]:
    """(the file that defines `cls`, its SHA-256): the code a record says it ran. A class whose
    module has no file (a notebook cell) is hashed by its source text, else by its functions'
    compiled code, so editing it changes the hash too."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if file and Path(file).is_file():
        return file, _sha256(Path(file))
    try:
        text = inspect.getsource(cls).encode()
    except (OSError, TypeError):
        parts = []
        for key, value in sorted(vars(cls).items()):
            func = getattr(value, "__func__", value)
            code = getattr(func, "__code__", None)
            parts.append(key.encode() + (marshal.dumps(code) if code is not None else repr(value).encode()))
        text = b"\0".join(parts)
    return file, hashlib.sha256(text).hexdigest()


def load(spec: str, *, expect_sha256: str | None = None, as_given: str | None = None) -> type[Recommender]:
    """Import the class `spec` names, register it under its `name`, return it.

    `expect_sha256`: the source's hash as another process saw it (a worker of `run --jobs N`);
    different code (the file changed meanwhile) is refused. `as_given`: the spec as the user
    wrote it (kept in records and reproduce commands), when `spec` is its absolute form."""
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise FusebenchError(f"model file {where} not found" + (" (it is a folder)" if path.is_dir() else ""))
        canonical = f"{path}:{attr}"
        sha = _sha256(path)
        held = _LOADED.get(canonical)
        cls = held[1] if held and held[0] == sha else _class_of(_import_file(path, sha), attr, spec)
        file = str(path)
    else:
        canonical = spec
        cls = _class_of(_import_module(where), attr, spec)
        file, sha = source_of(cls)  # the file defining the class (a package may re-export it)
        held = _LOADED.get(canonical)
        if held is not None and held[0] != sha:  # edited since this process imported it: import it again
            try:
                importlib.reload(sys.modules[cls.__module__])
            except Exception as exc:
                raise FusebenchError(f"model module {where!r}: importing it again failed: {_first_line(exc)}") from None
            cls = _class_of(sys.modules[where], attr, spec)
            file, sha = source_of(cls)
    if expect_sha256 is not None and sha != expect_sha256:
        raise FusebenchError(
            f"model {spec}: its source changed while the run was going (a worker loaded "
            "other code than the run started with); run again"
        )
    check_identity(cls, spec)
    register_external(cls, {"spec": as_given or spec, "path": file, "sha256": sha, "canonical": canonical})
    _LOADED[canonical] = (sha, cls)
    return cls


# entry point name -> why it could not be registered (said once; raised when that name is asked for)
ENTRY_POINT_ERRORS: dict[str, str] = {}


def load_entry_points() -> None:
    """Register the models that installed distributions expose in the group `fusebench.models`.

    One broken package does not stop every command: its entry point is left out with one
    warning line, and asking for that model by name gives the reason."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an installed package"
        where = f"entry point {ep.name} = {ep.value} of {dist} ({ENTRY_POINT_GROUP})"
        try:
            try:
                cls = ep.load()
            except Exception as exc:
                raise FusebenchError(f"{where}: importing it failed: {_first_line(exc)}") from None
            if not isinstance(cls, type) or not issubclass(cls, Recommender):
                raise FusebenchError(f"{where}: not a subclass of baselines.Recommender")
            check_identity(cls, where)
            spec = ep.value.replace(" ", "")
            file, sha = source_of(cls)
            register_external(
                cls,
                {"spec": spec, "path": file, "sha256": sha, "canonical": spec, "entry_point": f"{ep.name} ({dist})"},
            )
        except FusebenchError as exc:
            if ep.name not in ENTRY_POINT_ERRORS:
                print(f"warning: {exc} (left out)", file=sys.stderr)
            ENTRY_POINT_ERRORS[ep.name] = str(exc)


def load_source(source: dict[str, Any]) -> None:
    """Register again, in another process (a worker of `run --jobs N`), the class that
    `model_source(name)` described; refused when its code is not the same any more."""
    if source.get("session"):  # a class defined in a notebook: registered in the one process that runs it
        return
    if source.get("entry_point"):
        load_entry_points()
        now = [s for s in registered_sources() if s.get("entry_point") == source["entry_point"]]
        if not now or now[0]["sha256"] != source["sha256"]:
            raise FusebenchError(
                f"model {source['spec']} ({source['entry_point']}): its installed code changed "
                "while the run was going; run again"
            )
        return
    where, _, attr = source["spec"].rpartition(":")
    load(
        f"{source['path']}:{attr}" if where.endswith(".py") else source["spec"],
        expect_sha256=source["sha256"],
        as_given=source["spec"],
    )


def _resolve(name: str) -> type[Recommender] | None:
    if is_spec(name):
        return load(name)
    if name in ENTRY_POINT_ERRORS:
        raise FusebenchError(ENTRY_POINT_ERRORS[name])
    return None


register_resolver(_resolve)
register_discovery(load_entry_points)
