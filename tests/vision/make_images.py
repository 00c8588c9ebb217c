#!/usr/bin/python3
"""make_images.py — writes tests/data/vision/images/: small image files of a known pattern in the
formats lfm2c decodes, each with the RGB pixels Pillow gives for it
(ImageOps.exif_transpose(Image.open(f)).convert("RGB"), what Hugging Face's load_image hands the
processor: JPEGs with each EXIF orientation, little- and big-endian, malformed EXIF data, CMYK,
an animated WebP), and resize.json: FNV-1a 64 digests of Pillow's
BILINEAR resizes of the pattern, and of the tiles and thumbnail Lfm2VlImageProcessor's rule cuts
from larger images. Needs Debian's python3-pil; run from the repository root:
    /usr/bin/python3 tests/vision/make_images.py
test_image.c reads what it writes."""
import io, json, os, struct
from PIL import Image, ImageOps

OUT = "tests/data/vision/images"


def pattern(w, h):
    px = bytes((31 * x + 17 * y + 89 * c + (x * y) % 13) % 256 for y in range(h) for x in range(w) for c in range(3))
    return Image.frombytes("RGB", (w, h), px)


def fnv(b):
    h = 0xcbf29ce484222325
    for v in b:
        h = ((h ^ v) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def processor_cut(w, h, f=32, tile=512):
    """Lfm2VlImageProcessor's grid and thumbnail size (defaults) for a tiled image, by its code."""
    ratios = sorted({(c, r) for n in range(2, 11) for c in range(1, n + 1) for r in range(1, n + 1) if 2 <= c * r <= 10},
                    key=lambda x: x[0] * x[1])
    best, grid = float("inf"), (1, 1)
    for c, r in ratios:
        d = abs(w / h - c / r)
        if d < best:
            best, grid = d, (c, r)
        elif d == best and w * h > 0.5 * tile * tile * c * r:
            grid = (c, r)
    beta = (h * w / (256 * f * f)) ** 0.5
    return grid, (max(f, int(w / beta // f) * f), max(f, int(h / beta // f) * f))


def exif_tiff(orient, le=True, ifd=8, count=1, typ=3):
    """An APP1 EXIF payload whose IFD0 holds the orientation tag (raw, to write odd ones)."""
    e = "<" if le else ">"
    val = struct.pack(e + "H", orient) + b"\0\0" if typ == 3 else struct.pack(e + "I", orient)
    entry = struct.pack(e + "HHI", 0x0112, typ, count) + val
    return b"Exif\0\0" + (b"II*\0" if le else b"MM\0*") + struct.pack(e + "I", ifd) + struct.pack(e + "H", 1) + \
        entry + struct.pack(e + "I", 0)


def load(path):
    im = Image.open(path)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # Pillow refusing the EXIF data: the pixels as stored (lfm2c ignores it)
        im = Image.open(path)
    return im.convert("RGB")


def save(name, im, **kw):
    path = os.path.join(OUT, name)
    im.save(path, **kw)
    rgb = load(path)
    with open(path + ".rgb", "wb") as f:
        f.write(rgb.tobytes())
    return {"file": name, "w": rgb.width, "h": rgb.height}


def moved_exif(name, im, exif):
    """A PNG whose eXIf chunk comes after the image data (the PNG spec allows it; Pillow reads the
    file to its end for it): Pillow writes it first, so the chunk is moved, its CRC unchanged."""
    path = os.path.join(OUT, name)
    im.save(path, exif=exif)
    data = open(path, "rb").read()
    chunks, at = [], 8
    while at < len(data):
        n = struct.unpack(">I", data[at:at + 4])[0]
        chunks.append(data[at:at + 12 + n])
        at += 12 + n
    ex = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(ex) == 1
    rest.insert(len(rest) - 1, ex[0])  # before IEND
    with open(path, "wb") as f:
        f.write(data[:8] + b"".join(rest))
    rgb = load(path)
    with open(path + ".rgb", "wb") as f:
        f.write(rgb.tobytes())
    return {"file": name, "w": rgb.width, "h": rgb.height}


def main():
    os.makedirs(OUT, exist_ok=True)
    src = pattern(45, 29)
    alpha = Image.frombytes("L", (45, 29), bytes((x * 5 + y * 3) % 256 for y in range(29) for x in range(45)))
    rgba = src.copy()
    rgba.putalpha(alpha)
    pal = src.quantize(64)
    files = [
        save("rgb.png", src),
        save("rgba.png", rgba),
        save("gray.png", src.convert("L")),
        save("palette-trns.png", pal, transparency=3),
        save("baseline.jpg", src, quality=90),
        save("progressive.jpg", src, quality=80, progressive=True),
        save("gray.jpg", src.convert("L"), quality=85),
        save("lossless.webp", src, lossless=True),
        save("lossy.webp", src, quality=70),
        save("rgba.webp", rgba, lossless=True),
        save("palette.gif", pal),
        save("cmyk.jpg", src.convert("CMYK"), quality=90),
        save("animated.webp", src, save_all=True, append_images=[ImageOps.invert(src), src.transpose(0)],
             duration=100, loop=0, lossless=True),
    ]
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        files.append(save("exif-%d.jpg" % o, src, quality=90, exif=ex.tobytes()))
    files += [save("exif-be-6.jpg", src, quality=90, exif=exif_tiff(6, le=False)),
              save("exif-long-8.jpg", src, quality=90, exif=exif_tiff(8, typ=4)),
              save("exif-bad-offset.jpg", src, quality=90, exif=exif_tiff(6, ifd=60000)),
              save("exif-bad-count.jpg", src, quality=90, exif=exif_tiff(6, count=2)),
              save("exif-bad-value.jpg", src, quality=90, exif=exif_tiff(9)),
              save("exif-cut.jpg", src, quality=90, exif=exif_tiff(6)[:20])]
    # PNG's eXIf (the TIFF data alone; also after the pixels) and WebP's EXIF chunk
    ex6, ex3, ex8 = (Image.Exif() for _ in range(3))
    ex6[0x0112], ex3[0x0112], ex8[0x0112] = 6, 3, 8
    files += [save("exif-6.png", src, exif=ex6.tobytes()),
              moved_exif("exif-late-8.png", src, ex8.tobytes()),
              save("exif-3.webp", src, lossless=True, exif=ex3.tobytes()),
              save("exif-8-lossy.webp", src, quality=80, exif=ex8.tobytes()[6:])]  # TIFF alone
    resizes = []
    for (sw, sh), (dw, dh) in [((45, 29), (64, 32)), ((45, 29), (16, 40)), ((45, 29), (45, 12)), ((45, 29), (200, 130)),
                               ((300, 200), (32, 32)), ((301, 97), (96, 64)), ((17, 5), (17, 5))]:
        out = pattern(sw, sh).resize((dw, dh), resample=Image.BILINEAR)
        resizes.append({"src": [sw, sh], "dst": [dw, dh], "fnv": fnv(out.tobytes())})
    # the processor's cut (patch 16, merge 2, 64..256 tokens, tiles of 512) of these, by its code
    cuts = []
    for sw, sh in [(1100, 700), (1200, 1200)]:
        grid, thumb = processor_cut(sw, sh)
        im = pattern(sw, sh)
        big = im.resize((512 * grid[0], 512 * grid[1]), resample=Image.BILINEAR)
        d = []
        for r in range(grid[1]):
            for c in range(grid[0]):
                d.append(fnv(big.crop((c * 512, r * 512, (c + 1) * 512, (r + 1) * 512)).tobytes()))
        d.append(fnv(im.resize(thumb, resample=Image.BILINEAR).tobytes()))
        cuts.append({"src": [sw, sh], "grid": list(grid), "thumb": list(thumb), "fnv": d})
    with open(os.path.join(OUT, "images.json"), "w") as f:
        json.dump({"made_by": "tests/vision/make_images.py, Pillow " + Image.__version__, "files": files,
                   "resize": resizes, "cuts": cuts}, f, indent=1)


main()
