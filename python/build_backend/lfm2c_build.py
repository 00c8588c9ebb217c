"""lfm2c_build.py — the Python package's build backend (PEP 517, PEP 660), in the source tree.

The package is pure Python, so it needs no build tools: this backend writes its wheel (PEP 427)
with the standard library alone. `pip install ./python` therefore works on a stock interpreter,
with or without build isolation, with no network and with neither setuptools nor wheel installed
(pyproject.toml requires nothing). The metadata is pyproject.toml's [project] table.

LFM2C_BUNDLE_LIB=PATH/liblfm2c.so at build time copies that library into the package
(lfm2c/liblfm2c.so, which lfm2c/_lib.py finds before the system's) and tags the wheel for this
platform. An editable install (pip install -e) is a .pth file naming the source folder.
"""
import base64
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import time
import zipfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # python/
PACKAGE = "lfm2c"


def _project():
    """pyproject.toml's [project] string values (name, version, description, requires-python,
    readme, license's text): tomllib where the interpreter has it, else the simple lines this
    file holds (key = "value")."""
    path = os.path.join(SRC, "pyproject.toml")
    try:
        import tomllib
        with open(path, "rb") as f:
            proj = tomllib.load(f)["project"]
        lic = proj.get("license")
        if isinstance(lic, dict):
            proj["license"] = lic.get("text", "")
        return proj
    except ImportError:
        pass
    proj, section = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]").strip()
                continue
            m = re.match(r'([A-Za-z0-9_-]+)\s*=\s*(?:\{\s*text\s*=\s*)?"([^"]*)"', line)
            if section == "project" and m:
                proj[m.group(1)] = m.group(2)
    return proj


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"]]
    if p.get("description"):
        lines.append("Summary: " + p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: " + p["requires-python"])
    if p.get("license"):
        lines.append("License: " + p["license"])
    text = ""
    if p.get("readme"):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(SRC, p["readme"]), encoding="utf-8") as f:
            text = f.read()
    return p, "\n".join(lines) + "\n\n" + text


def _bundle():
    path = os.environ.get("LFM2C_BUNDLE_LIB")
    if path and not os.path.isfile(path):
        raise SystemExit("LFM2C_BUNDLE_LIB=%s: no such file" % path)
    return path or None


def _tag(bundle):
    if not bundle:
        return "py3-none-any"
    return "py3-none-" + re.sub(r"[-.]", "_", sysconfig.get_platform())


def _package_files():
    """(path in the wheel, path on disk) of the package's modules."""
    out = []
    root = os.path.join(SRC, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                full = os.path.join(dirpath, name)
                out.append((os.path.relpath(full, SRC).replace(os.sep, "/"), full))
    return out


class _Wheel:
    """A wheel being written: each entry hashed into RECORD, fixed timestamps."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.record = []
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
        self.date = time.gmtime(max(epoch, 315532800))[:6]

    def add(self, name, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode("utf-8")
        info = zipfile.ZipInfo(name, self.date)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append("%s,sha256=%s,%d" % (name, digest, len(data)))

    def close(self, dist_info):
        rec = dist_info + "/RECORD"
        self.record.append(rec + ",,")
        info = zipfile.ZipInfo(rec, self.date)
        info.external_attr = 0o100644 << 16
        self.zip.writestr(info, "\n".join(self.record) + "\n")
        self.zip.close()


def _dist_info_files(tag, purelib):
    p, metadata = _metadata()
    wheel = "Wheel-Version: 1.0\nGenerator: lfm2c_build\nRoot-Is-Purelib: %s\nTag: %s\n" % (
        "true" if purelib else "false", tag)
    dist_info = "%s-%s.dist-info" % (p["name"], p["version"])
    return p, dist_info, {"METADATA": metadata, "WHEEL": wheel, "top_level.txt": PACKAGE + "\n"}


def _write_wheel(wheel_directory, editable):
    bundle = None if editable else _bundle()
    tag = _tag(bundle)
    p, dist_info, meta = _dist_info_files(tag, not bundle)
    name = "%s-%s-%s.whl" % (p["name"], p["version"], tag)
    w = _Wheel(os.path.join(wheel_directory, name))
    if editable:
        w.add(PACKAGE + "_editable.pth", SRC + "\n")
    else:
        for arc, full in _package_files():
            with open(full, "rb") as f:
                w.add(arc, f.read())
        if bundle:
            with open(bundle, "rb") as f:
                w.add(PACKAGE + "/liblfm2c.so", f.read(), 0o755)
    for fname, text in meta.items():
        w.add(dist_info + "/" + fname, text)
    w.close(dist_info)
    return name


def _write_metadata(metadata_directory):
    _, dist_info, meta = _dist_info_files(_tag(_bundle()), not _bundle())
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    for fname, text in meta.items():
        with open(os.path.join(metadata_directory, dist_info, fname), "w", encoding="utf-8") as f:
            f.write(text)
    return dist_info


# ---- PEP 517 / PEP 660 hooks ----

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    p, metadata = _metadata()
    base = "%s-%s" % (p["name"], p["version"])
    files = [("pyproject.toml", os.path.join(SRC, "pyproject.toml")),
             ("build_backend/lfm2c_build.py", os.path.abspath(__file__))] + _package_files()
    if p.get("readme"):
        files.append((p["readme"], os.path.join(SRC, p["readme"])))
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for arc, full in files:
            tar.add(full, arcname=base + "/" + arc, recursive=False)
        data = metadata.encode("utf-8")
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return name
